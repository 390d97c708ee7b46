// Command liveforum-bench is liveforum's load generator. `liveforum-bench chat` measures chat fan-out: many
// websocket subscribers in one room, a few publishers, and for every message whether each subscriber got
// it exactly once and in order, and how long it took. `liveforum-bench media` measures the SFU: one
// synthetic publisher over WHIP and many pion viewers over WHEP, with loss, jitter, time to first packet
// and server CPU per subscriber.
//
// Every subcommand prints a human summary and, as its last line, one JSON object with the results, so that
// scripts can take `tail -n1`. The exit status is 1 when the run finished but its checks failed (messages
// lost, duplicated or out of order), 2 for bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

// errChecksFailed is returned by a subcommand whose run completed but whose delivery checks failed; the
// summary has been printed.
var errChecksFailed = errors.New("bench: delivery checks failed")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if err := raiseFileLimit(); err != nil {
		fmt.Fprintln(os.Stderr, "liveforum-bench: cannot raise the open file limit:", err)
	}
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "liveforum-bench:", err)
		os.Exit(2)
	case errors.Is(err, errChecksFailed):
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, "liveforum-bench:", err)
		os.Exit(1)
	}
}

// errUsage wraps command-line mistakes.
var errUsage = errors.New("usage")

const usage = `usage: liveforum-bench <command> [flags]

commands:
  chat   chat fan-out: many websocket subscribers, a few publishers, delivery and latency checks
  media  SFU fan-out: one WHIP publisher (VP8 + Opus), many WHEP subscribers; loss, jitter, server CPU

Run "liveforum-bench <command> -h" for the flags of a command.`

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "chat":
		return runChat(ctx, args[1:], stdout, stderr, getenv)
	case "media":
		return runMedia(ctx, args[1:], stdout, stderr, getenv)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return fmt.Errorf("%w: unknown command %q (chat, media)", errUsage, args[0])
}

// startProfile starts a CPU profile of the bench itself into path (nothing if path is empty); the
// returned function stops it.
func startProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}
