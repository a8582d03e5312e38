package door

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Canary is a revision on trial beside a service's rotation: Weight percent of the
// requests go to its Upstreams, drawn per request, or per client when Sticky is
// StickyCookie (a cookie the door gives the client) or "header:NAME" (by the value of
// the request's header NAME). A client's draw is a number from 0 to 9,999, kept while
// the weight rises: a client on the canary at 5% stays on it at 25%.
type Canary struct {
	Upstreams []string `json:"upstreams"`
	Weight    float64  `json:"weight"` // percent, 0 to 100
	Sticky    string   `json:"sticky,omitempty"`
}

// StickyCookie keeps each client on one side of a canary by a cookie.
const StickyCookie = "cookie"

// CookieName is the cookie that keeps a client on one side of service's canary.
func CookieName(service string) string { return "kiln_canary_" + strings.ReplaceAll(service, "-", "_") }

// cookieAge is how long a client keeps its draw.
const cookieAge = 24 * time.Hour

// draws is how many values a client's draw takes.
const draws = 10000

// toCanary reports whether r goes to the canary c, setting the cookie that keeps its
// client there when c is sticky by cookie.
func toCanary(c *Canary, service string, w http.ResponseWriter, r *http.Request) bool {
	if c == nil || len(c.Upstreams) == 0 || c.Weight <= 0 {
		return false
	}
	var draw int
	switch {
	case c.Sticky == StickyCookie:
		name := CookieName(service)
		draw = -1
		if ck, err := r.Cookie(name); err == nil {
			if n, err := strconv.Atoi(ck.Value); err == nil && n >= 0 && n < draws {
				draw = n
			}
		}
		if draw < 0 {
			draw = rand.N(draws)
			http.SetCookie(w, &http.Cookie{Name: name, Value: strconv.Itoa(draw), Path: "/",
				MaxAge: int(cookieAge / time.Second), HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
		}
	case strings.HasPrefix(c.Sticky, "header:"):
		v := r.Header.Get(strings.TrimPrefix(c.Sticky, "header:"))
		if v == "" {
			draw = rand.N(draws)
			break
		}
		h := fnv.New32a()
		h.Write([]byte(v))
		draw = int(h.Sum32() % draws)
	default:
		draw = rand.N(draws)
	}
	return float64(draw) < c.Weight*draws/100
}

// Groups of a service's requests, as Stats count them.
const (
	GroupStable = "stable"
	GroupCanary = "canary"
)

// GroupBuckets are the upper bounds (seconds) of the per-group latency histogram the
// canary's analysis reads: 100 µs growing by 2^(1/8) (9%) to about 100 s, fine enough
// for a percentile to within a tenth.
var GroupBuckets = func() []float64 {
	b := make([]float64, 160)
	for i := range b {
		b[i] = 0.0001 * math.Pow(2, float64(i)/8)
	}
	return b
}()

// GroupStats count the requests sent to one side of a canary (or, with no canary,
// the rotation's) since the door started: Errors are those answered 5xx and those on
// which a server failed (refused or dropped the connection) even if another answered.
// Latency[i] counts the requests that took at most GroupBuckets[i], the last one
// those slower than every bound.
type GroupStats struct {
	// Epoch names the counters' life (when they began, in Unix nanoseconds): counters
	// of another epoch are a restarted door's, counted from zero.
	Epoch    int64    `json:"epoch"`
	Requests uint64   `json:"requests"`
	Errors   uint64   `json:"errors"`
	Latency  []uint64 `json:"latency"`
}

type groupCounters struct {
	mu sync.Mutex
	st GroupStats
}

func newGroupCounters() *groupCounters {
	return &groupCounters{st: GroupStats{Epoch: time.Now().UnixNano(), Latency: make([]uint64, len(GroupBuckets)+1)}}
}

func (g *groupCounters) observe(code int, failed bool, took time.Duration) {
	sec := took.Seconds()
	i, j := 0, len(GroupBuckets)
	for i < j { // the first bound at or above sec
		h := int(uint(i+j) >> 1)
		if GroupBuckets[h] < sec {
			i = h + 1
		} else {
			j = h
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.st.Requests++
	if code >= 500 || failed {
		g.st.Errors++
	}
	g.st.Latency[i]++
}

func (g *groupCounters) snapshot() GroupStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.st
	st.Latency = append([]uint64(nil), g.st.Latency...)
	return st
}
