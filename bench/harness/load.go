package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Loader sends GETs to a URL open-loop at a fixed rate (a request goes at its time
// whatever happened to earlier ones) and counts the answers, as bench/loadgen does.
type Loader struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{}

	mu     sync.Mutex
	counts LoadCounts
}

// LoadCounts are a Loader's requests: a failure is a transport error or an answer
// outside 2xx.
type LoadCounts struct {
	Sent, Errors, Non2xx int
	// Samples are the first few failures, to say what went wrong.
	Samples []string
}

// Failed is Errors + Non2xx.
func (c LoadCounts) Failed() int { return c.Errors + c.Non2xx }

// StartLoad starts sending rate requests a second to url until Stop.
func StartLoad(ctx context.Context, url string, rate int) *Loader {
	ctx, cancel := context.WithCancel(ctx)
	l := &Loader{cancel: cancel, done: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				l.one(context.WithoutCancel(ctx), client, url)
			}()
		}
	}()
	return l
}

func (l *Loader) one(ctx context.Context, c *http.Client, url string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.Do(req)
	var fail string
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			fail = fmt.Sprintf("status %d", resp.StatusCode)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts.Sent++
	switch {
	case err != nil:
		l.counts.Errors++
		fail = err.Error()
	case fail != "":
		l.counts.Non2xx++
	}
	if fail != "" && len(l.counts.Samples) < 5 {
		l.counts.Samples = append(l.counts.Samples, fail)
	}
}

// Stop stops sending, waits for the requests in flight and returns the counts.
func (l *Loader) Stop() LoadCounts {
	l.cancel()
	<-l.done
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts
}

func fields(s string) []string { return strings.Fields(s) }

func splitLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func cut(s, sep string) (string, string, bool) { return strings.Cut(s, sep) }
