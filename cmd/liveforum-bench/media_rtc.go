package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// mediaAPI is how the bench's peers are made: one pion API for all (the publisher, pion subscribers), or
// one per lean subscriber, made from the same settings with its own socket (leanAPI).
type mediaAPI struct {
	api      *webrtc.API
	se       webrtc.SettingEngine
	me       *webrtc.MediaEngine
	cert     webrtc.Certificate
	loopback bool // every ICE interface is a loopback one: lean subscribers' sockets bind 127.0.0.1
}

// newMediaAPI returns the pion API the bench's peers use: default codecs, ICE over UDP on IPv4 limited to
// the given interfaces (a loopback interface among them allows loopback candidates), no mDNS. With nack,
// the peer negotiates NACK feedback and runs pion's NACK generator and responder; it always sends RTCP
// receiver and sender reports. It leaves out pion's stats and TWCC interceptors, which would cost the bench
// CPU per packet and measure nothing the bench reports. The certificate is shared by every peer made from
// the API, sparing a key generation per subscriber. Lean subscribers (leanAPI) negotiate the same codecs
// and feedback (NACK included) but run no interceptor.
func newMediaAPI(ifaces []string, nack bool) (*mediaAPI, error) {
	m := &mediaAPI{}
	se := webrtc.SettingEngine{}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if len(ifaces) > 0 {
		names := slices.Clone(ifaces)
		se.SetInterfaceFilter(func(name string) bool { return slices.Contains(names, name) })
		loop, all := false, true
		for _, name := range names {
			if ifc, err := net.InterfaceByName(name); err == nil && ifc.Flags&net.FlagLoopback != 0 {
				loop = true
			} else {
				all = false
			}
		}
		if loop {
			se.SetIncludeLoopbackCandidate(true)
		}
		if all {
			se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		}
		m.loopback = all
	}
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if nack {
		if err := webrtc.ConfigureNack(me, ir); err != nil {
			return nil, err
		}
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	cert, err := webrtc.GenerateCertificate(key)
	if err != nil {
		return nil, err
	}
	m.se, m.me, m.cert = se, me, *cert
	m.api = webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	return m, nil
}

// leanAPI is the API of one lean subscriber: the settings of m, ICE through the tap's mux, the DTLS key
// log to the tap, and no interceptors (they would see no RTP: the tap takes it).
func (m *mediaAPI) leanAPI(t *tap) *webrtc.API {
	se := m.se // a copy: the mux and the key log are this subscriber's
	se.SetICEUDPMux(t.mux)
	se.SetDTLSKeyLogWriter(t)
	return webrtc.NewAPI(webrtc.WithMediaEngine(m.me), webrtc.WithInterceptorRegistry(&interceptor.Registry{}), webrtc.WithSettingEngine(se))
}

// completeOffer makes pc's offer with every candidate in it (WHIP and WHEP without trickle).
func completeOffer(ctx context.Context, pc *webrtc.PeerConnection) (string, error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return "", err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return pc.LocalDescription().SDP, nil
}

// postOffer POSTs an SDP offer to a WHIP or WHEP endpoint (RFC 9725) and returns the answer and the
// session's absolute URL from Location.
func postOffer(ctx context.Context, hc *http.Client, endpoint, token, offer string) (answer, location string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(offer))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", "", fmt.Errorf("POST %s: reading the answer: %w", endpoint, err)
	}
	if resp.StatusCode != http.StatusCreated {
		msg := strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		return "", "", fmt.Errorf("POST %s: %s: %s", endpoint, resp.Status, msg)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/sdp") {
		return "", "", fmt.Errorf("POST %s: answer of type %q, want application/sdp", endpoint, ct)
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", "", fmt.Errorf("POST %s: 201 without Location", endpoint)
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "", "", fmt.Errorf("POST %s: Location %q: %w", endpoint, loc, err)
	}
	return string(body), resp.Request.URL.ResolveReference(u).String(), nil
}

// waitConnected waits until pc is connected; states reports every change.
func waitConnected(ctx context.Context, states <-chan webrtc.PeerConnectionState, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case st := <-states:
			switch st {
			case webrtc.PeerConnectionStateConnected:
				return nil
			case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
				return fmt.Errorf("peer connection %s", st)
			}
		case <-t.C:
			return fmt.Errorf("not connected after %v", timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
