package harness

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// eventLines prints events as `docker events --format containerEventFormat` does,
// times in seconds after t0.
func eventLines(t0 time.Time, evs ...string) string {
	var b strings.Builder
	for _, ev := range evs {
		at, rest, _ := strings.Cut(ev, " ")
		var s float64
		fmt.Sscanf(at, "%g", &s)
		fmt.Fprintf(&b, "%d|%s\n", t0.Add(time.Duration(s*float64(time.Second))).UnixNano(), rest)
	}
	return b.String()
}

func TestParseContainerEvents(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	out := eventLines(t0, "0.2 start|n1|img:v2|web|3", "0.1 create|n1|img:v2|web|3") + "a line of another shape\n" +
		eventLines(t0, "0.3 health_status: healthy|n1|img:v2||")
	evs := parseContainerEvents(out)
	if len(evs) != 3 {
		t.Fatalf("parsed %d events: %+v", len(evs), evs)
	}
	if evs[0].Action != "create" || evs[1].Action != "start" || evs[2].Action != "health_status: healthy" {
		t.Errorf("not in time order: %+v", evs)
	}
	if e := evs[0]; e.Name != "n1" || e.Image != "img:v2" || e.Service != "web" || e.Revision != "3" || !e.Time.Equal(t0.Add(100*time.Millisecond)) {
		t.Errorf("event: %+v", e)
	}
}

// A Swarm update with HEALTHCHECK, start-first, of two tasks: o1 and o2 old (image
// v1), n1 and n2 new (v2).
func TestWhereTimeGoesSwarm(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	evs := parseContainerEvents(eventLines(t0,
		"-0.5 kill|o0|img:v1||", // before the update: left out
		"0.2 create|n1|img:v2||",
		"0.5 start|n1|img:v2||",
		"1.5 health_status: healthy|n1|img:v2||",
		"1.6 kill|o1|img:v1||",
		"1.8 create|n2|img:v2||",
		"1.8 stop|o1|img:v1||",
		"2.0 start|n2|img:v2||",
		"2.7 health_status: healthy|n2|img:v2||",
		"2.9 health_status: healthy|n2|img:v2||", // the first healthy counts
		"3.0 kill|o2|img:v1||",
		"3.1 kill|o2|img:v1||",
		"3.3 stop|o2|img:v1||",
	))
	m := whereTimeGoes(evs, t0, func(e containerEvent) bool { return e.Image == "img:v2" }, false)
	want := map[string]float64{
		"first new server created": 0.2,
		"step between new servers": 1.6,
		"create → start":           0.25, // median of 0.3 and 0.2
		"ready":                    0.85, // median of 1.0 and 0.7
		"old server stop":          0.25, // median of 0.2 and 0.3 (from the first kill)
		"last old server SIGTERM":  3.0,
	}
	checkSteps(t, m, want)
}

// A kiln rolling update of two servers: each old server gets its SIGTERM once the new
// one is admitted; there is no Docker health check.
func TestWhereTimeGoesKiln(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	evs := parseContainerEvents(eventLines(t0,
		"0.1 create|n1|kiln/img:b|web|3",
		"0.4 start|n1|kiln/img:b|web|3",
		"1.4 kill|o1|kiln/img:a|web|2",
		"1.5 stop|o1|kiln/img:a|web|2",
		"1.6 create|n2|kiln/img:b|web|3",
		"1.9 start|n2|kiln/img:b|web|3",
		"2.1 kill|o2|kiln/img:a|web|2",
		"2.3 stop|o2|kiln/img:a|web|2",
	))
	isNew := func(e containerEvent) bool { return e.Revision == "3" }
	checkSteps(t, whereTimeGoes(evs, t0, isNew, true), map[string]float64{
		"first new server created": 0.1,
		"step between new servers": 1.5,
		"create → start":           0.3,
		"ready":                    0.6, // median of 1.0 and 0.2: start of the i-th new → SIGTERM of the i-th old
		"old server stop":          0.15,
		"last old server SIGTERM":  2.1,
	})
	// Swarm without a health check has no "ready".
	if r, ok := whereTimeGoes(evs, t0, isNew, false)["ready"]; ok {
		t.Errorf("ready without a health check, not kiln: %v", r)
	}
	if m := whereTimeGoes(nil, t0, isNew, true); len(m) != 0 {
		t.Errorf("no events gave %v", m)
	}
}

func checkSteps(t *testing.T, got, want map[string]float64) {
	t.Helper()
	for _, k := range rolloutSteps {
		w, ok := want[k]
		g, has := got[k]
		if ok != has || math.Abs(g-w) > 1e-6 {
			t.Errorf("%s = %v (%v), want %v (%v)", k, g, has, w, ok)
		}
	}
}
