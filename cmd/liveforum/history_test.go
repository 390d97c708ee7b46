package main

import (
	"context"
	"testing"
	"time"

	"github.com/liveforum/liveforum/client"
)

// -history-on-join 0 is accepted ("0..history-size") and must mean: no history for a new joiner.
func TestHistoryOnJoinZeroSendsNoHistory(t *testing.T) {
	r := startServe(t, "-history-on-join", "0")
	ws := "ws://" + r.addr + "/ws"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := dialClient(t, client.Options{URL: ws, Name: "A"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Join(ctx, "lobby", client.JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Chat(ctx, "lobby", "earlier message", ""); err != nil {
		t.Fatal(err)
	}
	b, err := dialClient(t, client.Options{URL: ws, Name: "B"})
	if err != nil {
		t.Fatal(err)
	}
	reply, err := b.Join(ctx, "lobby", client.JoinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(reply.Events) != 0 {
		t.Fatalf("-history-on-join 0 still sent %d events", len(reply.Events))
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}
