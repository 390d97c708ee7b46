package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// httpBase turns a websocket URL into the base URL of the same server's HTTP endpoints:
// ws://host:port/ws → http://host:port.
func httpBase(wsURL string) (string, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	case "http", "https":
	default:
		return "", fmt.Errorf("%q is not a ws:// or wss:// URL", wsURL)
	}
	u.Path, u.RawPath, u.RawQuery, u.Fragment = "", "", "", ""
	return u.String(), nil
}

// metricsScraper reads a server's /metrics with the admin key.
type metricsScraper struct {
	base string
	key  string
	hc   *http.Client
}

func newMetricsScraper(wsURL, key string) (*metricsScraper, error) {
	base, err := httpBase(wsURL)
	if err != nil {
		return nil, err
	}
	// No keep-alive: the bench scrapes three times in a run and leaves no idle connection behind.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	return &metricsScraper{base: base, key: key, hc: hc}, nil
}

// scrape returns every sample of /metrics by name; gc asks the server to collect garbage first, so that
// heap figures are live memory.
func (m *metricsScraper) scrape(ctx context.Context, gc bool) (map[string]float64, error) {
	u := m.base + "/metrics"
	if gc {
		u += "?gc=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+m.key)
	resp, err := m.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("metrics: %s: %s", u, resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads the Prometheus text format, keeping samples without labels.
func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.ContainsRune(name, '{') {
			continue
		}
		val, _, _ = strings.Cut(strings.TrimSpace(val), " ") // drop a timestamp
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}
