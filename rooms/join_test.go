package rooms

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/protocol"
)

// The join reply is the first frame a session gets; it carries the room state, the log position and the
// recent chat, and live events follow it with higher offsets.
func TestJoinReplyComesFirstWithStateAndHistory(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.create(Settings{Name: "hall", Title: "Great hall", Guests: true})

	ana, anaSink, r1 := e.join(person("ana", "moderator"), "hall", JoinParams{ID: 7, Presence: true})
	if r1.Room.Name != "hall" || r1.Room.Title != "Great hall" || !r1.Room.Guests || r1.Self.Identity != "ana" {
		t.Fatalf("first reply: %+v", r1)
	}
	top, err := e.b.History(ctx, "hall", broker.HistoryOptions{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r1.Epoch == "" || r1.Epoch != top.Top.Epoch || r1.Offset != top.Top.Offset || r1.Offset != 1 {
		t.Fatalf("reply at %s/%d, log at %+v", r1.Epoch, r1.Offset, top.Top)
	}
	if r1.MemberCount != 1 || len(r1.Members) != 1 || r1.Members[0] != ana.Member() || len(r1.Events) != 0 || r1.Recovered {
		t.Fatalf("first reply state: %+v", r1)
	}
	if n := len(anaSink.messages(t)); n != 1 {
		t.Fatalf("the joiner got %d frames; its own member.joined is part of its reply state", n)
	}

	o1 := mustChat(t, ana, "one")
	o2 := mustChat(t, ana, "two")
	_, bobSink, r2 := e.join(person("bob", "participant"), "hall", JoinParams{ID: 8, Presence: true})
	if r2.MemberCount != 2 || len(r2.Members) != 2 || r2.Epoch != r1.Epoch || r2.Offset != o2+1 {
		t.Fatalf("second reply: count %d members %v at %s/%d", r2.MemberCount, r2.Members, r2.Epoch, r2.Offset)
	}
	if got := historyTexts(t, r2); !slices.Equal(got, []string{"one", "two"}) ||
		r2.Events[0].Offset != o1 || r2.Events[1].Offset != o2 {
		t.Fatalf("history %q at %+v", got, r2.Events)
	}
	evs := anaSink.events(t)
	if last := evs[len(evs)-1]; last.Kind != protocol.KindMemberJoined || last.Member.Identity != "bob" || last.Offset != r2.Offset {
		t.Fatalf("ana's last event: %+v", last)
	}

	o3 := mustChat(t, ana, "three")
	msgs := bobSink.messages(t)
	if len(msgs) != 2 || msgs[1].Type != protocol.TypeEvent || msgs[1].Offset != o3 || o3 != r2.Offset+1 {
		t.Fatalf("bob's frames after the reply: %+v (chat at %d)", msgs[1:], o3)
	}
}

// A fresh join gets the newest HistoryOnJoin chat messages and no member events.
func TestHistoryOnJoinHoldsOnlyTheLastChats(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.HistoryOnJoin = 3 })
	e.create(Settings{Name: "r"})
	ana, _, _ := e.join(person("ana", "participant"), "r", JoinParams{Presence: true})
	mustChat(t, ana, "m1")
	p, _, _ := e.join(person("pia", "participant"), "r", JoinParams{Presence: true})
	mustChat(t, ana, "m2")
	mustChat(t, p, "m3")
	p.Leave(context.Background(), true)
	mustChat(t, ana, "m4")
	e.join(person("quim", "participant"), "r", JoinParams{Presence: true})
	mustChat(t, ana, "m5")
	e.join(person("rui", "participant"), "r", JoinParams{Presence: true})

	_, _, r := e.join(person("zoe", "participant"), "r", JoinParams{Presence: true})
	if got := historyTexts(t, r); !slices.Equal(got, []string{"m3", "m4", "m5"}) {
		t.Fatalf("history on join = %q, want the last three chats", got)
	}
	for i := 1; i < len(r.Events); i++ {
		if r.Events[i].Offset <= r.Events[i-1].Offset || r.Events[i].Offset > r.Offset {
			t.Fatalf("history offsets %+v, reply at %d", r.Events, r.Offset)
		}
	}

}

// A session without presence gets neither the member list nor member events, but does get chat.
func TestSessionWithoutPresenceGetsNoMemberEvents(t *testing.T) {
	e := newEnv(t, nil)
	e.create(Settings{Name: "big"})
	ana, _, _ := e.join(person("ana", "participant"), "big", JoinParams{Presence: true})
	_, botSink, r := e.join(person("bot", "bot"), "big", JoinParams{Presence: false})
	if r.Members != nil || r.MemberCount != 2 {
		t.Fatalf("presence-less reply: members %v, count %d", r.Members, r.MemberCount)
	}
	bea, _, _ := e.join(person("bea", "participant"), "big", JoinParams{Presence: true})
	off := mustChat(t, bea, "hi all")
	bea.Leave(context.Background(), true)
	ana.Leave(context.Background(), false)

	evs := botSink.events(t)
	if len(evs) != 1 || evs[0].Kind != protocol.KindChat || evs[0].Offset != off {
		t.Fatalf("presence-less session received %+v, want only the chat at %d", evs, off)
	}
	// Its recovery skips member events too.
	_, s2, r2 := e.join(person("bot", "bot"), "big", JoinParams{Presence: false,
		Since: &protocol.Position{Epoch: r.Epoch, Offset: r.Offset}})
	if !r2.Recovered || len(r2.Events) != 1 || r2.Events[0].Offset != off {
		t.Fatalf("presence-less recovery: %+v", r2)
	}
	if evs := s2.events(t); len(evs) != 0 {
		t.Fatalf("live events after the reply: %+v", evs)
	}
}

func TestGuestsCreationAndMissingRooms(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()

	if _, err := e.reg.Join(ctx, person("ana", "participant"), "nowhere", JoinParams{}, &memSink{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("join of a missing room without Create: %v", err)
	}
	if _, err := e.reg.Get(ctx, "nowhere"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused join left a room behind: %v", err)
	}

	creator := person("ana", "moderator")
	creator.Create = &Settings{Title: "Made on join", Guests: true}
	_, _, r := e.join(creator, "made", JoinParams{Presence: true})
	if r.Room.Name != "made" || r.Room.Title != "Made on join" || !r.Room.Guests {
		t.Fatalf("room created on join: %+v", r.Room)
	}
	if st, err := e.reg.Get(ctx, "made"); err != nil || st.Members != 1 || !st.Guests || st.Created.IsZero() {
		t.Fatalf("status of created room: %+v, %v", st, err)
	}
	// Create on a room that exists changes nothing.
	again := person("bob", "participant")
	again.Create = &Settings{Title: "Other", Guests: false}
	if _, _, r := e.join(again, "made", JoinParams{}); r.Room.Title != "Made on join" {
		t.Fatalf("Create overwrote an existing room: %+v", r.Room)
	}

	bad := person("ana", "moderator")
	bad.Create = &Settings{Languages: []string{"not a tag"}}
	if _, err := e.reg.Join(ctx, bad, "badroom", JoinParams{}, &memSink{}); !errors.Is(err, ErrBadSettings) {
		t.Fatalf("invalid Create settings: %v", err)
	}
	if _, err := e.reg.Get(ctx, "badroom"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("invalid settings left a room: %v", err)
	}

	e.create(Settings{Name: "closed-door", Guests: false})
	e.create(Settings{Name: "open-door", Guests: true})
	guest := Actor{Member: protocol.Member{Identity: "guest-1", Name: "Gus", Role: "guest"}, Guest: true}
	if _, err := e.reg.Join(ctx, guest, "closed-door", JoinParams{}, &memSink{}); !errors.Is(err, ErrGuests) {
		t.Fatalf("guest into a room without guests: %v", err)
	}
	if n := e.count("closed-door", protocol.KindMemberJoined, "guest-1"); n != 0 {
		t.Fatalf("refused guest's join was logged %d times", n)
	}
	guest.Create = &Settings{Guests: true} // a Create does not open an existing room to guests
	if _, err := e.reg.Join(ctx, guest, "closed-door", JoinParams{}, &memSink{}); !errors.Is(err, ErrGuests) {
		t.Fatalf("guest with Create into a room without guests: %v", err)
	}
	guest.Create = nil
	if _, _, r := e.join(guest, "open-door", JoinParams{}); r.Self.Identity != "guest-1" {
		t.Fatalf("guest join reply: %+v", r)
	}

	if _, err := e.reg.Create(ctx, Settings{Name: "open-door"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	for _, s := range []Settings{{Name: ""}, {Name: ".hidden"}, {Name: "sp ace"}, {Name: "x", MaxMembers: -1},
		{Name: "x", EmptyTTL: -time.Second}, {Name: "x", Languages: []string{""}}} {
		if _, err := e.reg.Create(ctx, s); !errors.Is(err, ErrBadSettings) {
			t.Errorf("create %+v: %v, want ErrBadSettings", s, err)
		}
	}
}

func TestMaxMembersRefusesAllButModeratorsAndReturningMembers(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.create(Settings{Name: "small", MaxMembers: 2})
	e.join(person("ana", "participant"), "small", JoinParams{})
	e.join(person("bob", "participant"), "small", JoinParams{})
	if _, err := e.reg.Join(ctx, person("cai", "participant"), "small", JoinParams{}, &memSink{}); !errors.Is(err, ErrRoomFull) {
		t.Fatalf("third member: %v", err)
	}
	if n := e.count("small", protocol.KindMemberJoined, "cai"); n != 0 {
		t.Fatalf("refused join logged %d times", n)
	}
	e.join(person("mod", "moderator"), "small", JoinParams{})   // moderators are exempt
	e.join(person("ana", "participant"), "small", JoinParams{}) // already a member: a reconnect, not a new member
	if n := e.members("small"); n != 3 {
		t.Fatalf("%d members", n)
	}

	// A room without its own limit takes the registry's.
	d := newEnv(t, func(c *Config) { c.MaxMembers = 1 })
	d.create(Settings{Name: "solo"})
	d.join(person("ana", "participant"), "solo", JoinParams{})
	if _, err := d.reg.Join(ctx, person("bob", "participant"), "solo", JoinParams{}, &memSink{}); !errors.Is(err, ErrRoomFull) {
		t.Fatalf("registry default limit: %v", err)
	}
}

// After Close the registry has closed every session and refuses joins.
func TestRegistryCloseClosesSessions(t *testing.T) {
	e := newEnv(t, nil)
	e.create(Settings{Name: "a"})
	e.create(Settings{Name: "b"})
	_, s1, _ := e.join(person("ana", "participant"), "a", JoinParams{})
	_, s2, _ := e.join(person("bob", "participant"), "b", JoinParams{})
	e.reg.Close(protocol.CloseShutdown, "bye")
	if s1.closeCode() != protocol.CloseShutdown || s2.closeCode() != protocol.CloseShutdown {
		t.Fatalf("close codes %d %d", s1.closeCode(), s2.closeCode())
	}
	if _, err := e.reg.Join(context.Background(), person("cai", "participant"), "a", JoinParams{}, &memSink{}); !errors.Is(err, ErrRegistryClose) {
		t.Fatalf("join after Close: %v", err)
	}
}

// List shows every room with its member count.
func TestListRooms(t *testing.T) {
	e := newEnv(t, nil)
	for _, n := range []string{"c", "a", "b"} {
		e.create(Settings{Name: n})
	}
	e.join(person("ana", "participant"), "b", JoinParams{})
	list, err := e.reg.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, st := range list {
		got = append(got, fmt.Sprintf("%s:%d", st.Name, st.Members))
	}
	if fmt.Sprint(got) != "[a:0 b:1 c:0]" {
		t.Fatalf("list = %v", got)
	}
}
