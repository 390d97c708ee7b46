package web_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/internal/redistest"
)

// Redis goes away while people chat: a message written meanwhile waits in the sender's outbox (shown as
// waiting, not lost, not an error), and when Redis is back it reaches everyone exactly once.
func TestRedisOutageInTheBrowser(t *testing.T) {
	rs := redistest.Start(t, redistest.AOF())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := broker.NewRedis(ctx, broker.RedisOptions{URL: rs.URL(), AppendHold: 200 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	f := newForumOn(t, b)
	ana := f.joinedPage(t, "ana", "/r/outage", "Ana", "en")
	bruno := f.joinedPage(t, "bruno", "/r/outage", "Bruno", "de")
	ana.send("before the outage")
	bruno.waitMessages("before the outage")

	rs.Kill()
	ana.send("written while Redis is down")
	ana.waitVisible("chat-pending")
	ana.waitFor("waiting for the message to be marked as retrying",
		jsq("chat-pending")+`?.dataset.state === 'retrying' && `+jsq("chat-pending")+`.innerText.includes(`+jsString("written while Redis is down")+`)`,
		`({state: `+jsq("chat-pending")+`?.dataset.state, text: `+jsq("chat-pending")+`?.innerText})`, waitTimeout)
	if shown := eval[string](ana, `document.querySelector('.chat-error')?.innerText ?? ''`); strings.TrimSpace(shown) != "" {
		t.Errorf("ana's page shows an error while the message waits: %q", shown)
	}
	ana.screenshot("redis-outage-waiting.png", false)
	time.Sleep(2 * time.Second) // the outbox tries again meanwhile, and is refused again

	rs.Restart()
	for _, p := range []*page{ana, bruno} {
		p.waitMessages("before the outage", "written while Redis is down")
	}
	ana.waitFor("waiting for chat-pending to empty", `!`+jsq("chat-pending"), "", waitTimeout)
	ana.send("after the outage")
	bruno.waitMessages("after the outage")
	ana.waitMessages("after the outage")

	logged := f.chatLog("outage")
	if len(logged) != 3 {
		t.Fatalf("server logged %d chat messages, want 3 (each once): %v", len(logged), logged)
	}
	for _, p := range []*page{ana, bruno} {
		msgs := p.messages()
		checkOffsets(t, p, msgs, logged)
		find(t, p, msgs, "written while Redis is down") // exactly once
	}
}
