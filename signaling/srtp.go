package signaling

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// The direct path's encryption. For the AEAD_AES_128_GCM and AEAD_AES_256_GCM profiles (RFC 7714), which
// browsers and pion prefer, packets are sealed here: the packet is marshalled once into the send buffer
// and sealed in place, with a rollover counter per stream kept by the track that sends it. pion's
// srtp.Context does the same work with a header parse, a map look-up and a lock per packet, which in the
// media bench cost as much again as the cipher itself. The other profiles go through a pion context.

// rtpSealer encrypts one subscriber's RTP packets.
type rtpSealer struct {
	gcm *gcmKeys // the AEAD profiles; nil: ctx

	mu      sync.Mutex
	streams map[uint32]*gcmStream // by SSRC: a stream's packet index is never restarted under the key
	ctx     *srtp.Context         // the other profiles
}

// gcmKeys are the session keys of an AEAD profile (RFC 7714 §11: the RFC 3711 key derivation).
type gcmKeys struct {
	key  []byte   // the session encryption key: 16 or 32 bytes
	salt [12]byte // the session salt
}

// Key derivation labels (RFC 3711 §4.3.2).
const (
	labelRTPKey  = 0x00
	labelRTPSalt = 0x02
)

var errMasterKey = errors.New("signaling: SRTP master key or salt of the wrong size")

// deriveGCM derives the RTP session key and salt from a master key (16 or 32 bytes) and a 12-byte master
// salt with the AES-CM PRF (RFC 3711 §4.3.3, key derivation rate 0).
func deriveGCM(masterKey, masterSalt []byte) (*gcmKeys, error) {
	if (len(masterKey) != 16 && len(masterKey) != 32) || len(masterSalt) != 12 {
		return nil, errMasterKey
	}
	block, err := aes.NewCipher(masterKey)
	if err != nil {
		return nil, err
	}
	// The PRF's output for one label: AES in counter mode from (master salt XOR label at octet 7) · 2^16.
	prf := func(label byte, out []byte) {
		var in, blk [aes.BlockSize]byte
		copy(in[:], masterSalt)
		in[7] ^= label
		for i := 0; i*aes.BlockSize < len(out); i++ {
			binary.BigEndian.PutUint16(in[14:], uint16(i))
			block.Encrypt(blk[:], in[:])
			copy(out[i*aes.BlockSize:], blk[:])
		}
	}
	k := &gcmKeys{key: make([]byte, len(masterKey))}
	prf(labelRTPKey, k.key)
	prf(labelRTPSalt, k.salt[:])
	return k, nil
}

// newSealer makes the sealer of a subscriber from its sending master key and salt.
func newSealer(profile srtp.ProtectionProfile, masterKey, masterSalt []byte) (*rtpSealer, error) {
	switch profile {
	case srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAeadAes256Gcm:
		k, err := deriveGCM(masterKey, masterSalt)
		if err != nil {
			return nil, err
		}
		return &rtpSealer{gcm: k, streams: map[uint32]*gcmStream{}}, nil
	}
	ctx, err := srtp.CreateContext(masterKey, masterSalt, profile)
	if err != nil {
		return nil, err
	}
	return &rtpSealer{ctx: ctx}, nil
}

// gcmStream seals the packets of one SSRC. It is used by one track's writes at a time (the downTrack's
// lock).
type gcmStream struct {
	ssrc    uint32
	aead    cipher.AEAD
	salt    [12]byte
	highest uint64 // the highest packet index sealed: rollover counter << 16 | sequence number
	started bool
	iv      [12]byte // the IV's storage (a local one would escape through the AEAD interface)
}

// index is the packet index of sequence number seq: the rollover counter guessed from the highest index
// sealed (RFC 3711 Appendix A), as the receiver guesses it. A packet up to half the number space behind
// the highest (a retransmission) keeps its own counter.
//
// A packet that would come before the stream's first wrap (a late one, numbered just below 65536 while
// the counter is still 0) has no index and is not sent: taking it as far ahead, as pion's context does,
// would move the counter on by one for every later packet, which the receiver would no longer decrypt.
func (s *gcmStream) index(seq uint16) (uint64, bool) {
	if !s.started {
		s.started, s.highest = true, uint64(seq)
		return s.highest, true
	}
	roc, high := uint32(s.highest>>16), uint16(s.highest)
	v := roc
	if high < 1<<15 {
		if int(seq)-int(high) > 1<<15 {
			if roc == 0 {
				return 0, false
			}
			v = roc - 1 // before the last wrap
		}
	} else if int(high)-1<<15 > int(seq) {
		if roc == 1<<32-1 {
			return 0, false // 2^48 packets: the key must seal no more (RFC 3711 §9.2)
		}
		v = roc + 1 // after a wrap
	}
	i := uint64(v)<<16 | uint64(seq)
	if i > s.highest {
		s.highest = i
	}
	return i, true
}

// seal encrypts the RTP packet in b of header length hl in place and appends the tag (b needs the
// capacity for it): RFC 7714 §8, the IV from the salt, SSRC, rollover counter and sequence number, the
// header authenticated in the clear.
func (s *gcmStream) seal(b []byte, hl int) ([]byte, error) {
	i, ok := s.index(binary.BigEndian.Uint16(b[2:4]))
	if !ok {
		return nil, errNoIndex
	}
	iv := &s.iv
	*iv = [12]byte{}
	binary.BigEndian.PutUint32(iv[2:], s.ssrc)
	binary.BigEndian.PutUint32(iv[6:], uint32(i>>16))
	binary.BigEndian.PutUint16(iv[10:], uint16(i))
	for j := range iv {
		iv[j] ^= s.salt[j]
	}
	return s.aead.Seal(b[:hl], iv[:], b[hl:], b[:hl]), nil
}

var errNoIndex = errors.New("signaling: an RTP packet from before its stream's first sequence number wrap")

// stream returns the stream of an SSRC, made on its first packet.
func (r *rtpSealer) stream(ssrc uint32) (*gcmStream, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.streams[ssrc]; s != nil {
		return s, nil
	}
	block, err := aes.NewCipher(r.gcm.key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	s := &gcmStream{ssrc: ssrc, aead: aead, salt: r.gcm.salt}
	r.streams[ssrc] = s
	return s, nil
}

var errRTPHeader = errors.New("signaling: not an RTP packet")

// seal encrypts the marshalled RTP packet b, with a header of hl bytes, in place, appending the tag (b
// needs srtpOverhead bytes of spare capacity), and returns the packet to send. *cached is the caller's
// stream from its last packet (looked at first: the sealer's own lines are then not read), replaced when
// the SSRC differs; h is scratch for a pion context.
func (r *rtpSealer) seal(b []byte, hl int, cached *atomic.Pointer[gcmStream], h *rtp.Header) ([]byte, error) {
	if len(b) < 12 || hl < 12 || hl > len(b) {
		return nil, errRTPHeader
	}
	ssrc := binary.BigEndian.Uint32(b[8:12])
	if s := cached.Load(); s != nil && s.ssrc == ssrc {
		return s.seal(b, hl)
	}
	if r.gcm == nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.ctx.EncryptRTP(b, b, h)
	}
	s, err := r.stream(ssrc)
	if err != nil {
		return nil, err
	}
	cached.Store(s)
	return s.seal(b, hl)
}
