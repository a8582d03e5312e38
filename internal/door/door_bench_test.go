package door

import (
	"context"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"
)

// BenchmarkDoor measures the latency the door adds: each iteration sends one request
// straight to a server and one through the door, over loopback with keep-alives; with
// a canary on trial (a tenth of the requests to another server), drawn per request or
// by the client's cookie.
func BenchmarkDoor(b *testing.B) {
	b.Run("rotation", func(b *testing.B) { benchDoor(b, nil) })
	b.Run("canary", func(b *testing.B) { benchDoor(b, &Canary{Weight: 10}) })
	b.Run("canary-cookie", func(b *testing.B) { benchDoor(b, &Canary{Weight: 10, Sticky: StickyCookie}) })
}

func benchDoor(b *testing.B, canary *Canary) {
	up := backend(b, "web")
	addr := freeAddr(b)
	s := New(Options{})
	b.Cleanup(s.Shutdown)
	if canary != nil {
		canary.Upstreams = []string{backend(b, "canary")}
	}
	if err := s.Apply(context.Background(), Config{Generation: 1, Services: []Service{
		{Name: "web", Listen: addr, Upstreams: []string{up}, Canary: canary},
	}}); err != nil {
		b.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	b.Cleanup(c.CloseIdleConnections)
	do := func(u string) time.Duration {
		start := time.Now()
		res, err := c.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return time.Since(start)
	}
	direct, via := "http://"+up+"/", "http://"+addr+"/"
	do(direct)
	do(via)
	var viaDirect, viaDoor []time.Duration
	b.ResetTimer()
	for b.Loop() {
		viaDirect = append(viaDirect, do(direct))
		viaDoor = append(viaDoor, do(via))
	}
	b.StopTimer()
	slices.Sort(viaDirect)
	slices.Sort(viaDoor)
	q := func(d []time.Duration, f float64) float64 {
		return float64(d[int(f*float64(len(d)-1))]) / float64(time.Microsecond)
	}
	b.ReportMetric(q(viaDoor, 0.5)-q(viaDirect, 0.5), "added-p50-µs")
	b.ReportMetric(q(viaDoor, 0.99)-q(viaDirect, 0.99), "added-p99-µs")
}
