package engine

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kiln-build/kiln/internal/door"
	"github.com/kiln-build/kiln/internal/driver"
)

// metrics are the engine's Prometheus metrics: base units, no per-server labels.
type metrics struct {
	reg          *prometheus.Registry
	replacements *prometheus.CounterVec
	drift        *prometheus.CounterVec
	rollouts     *prometheus.HistogramVec
	probes       *prometheus.HistogramVec
	runs         *prometheus.CounterVec
	stages       *prometheus.HistogramVec
	stateWrites  *prometheus.CounterVec
}

func newMetrics(e *Engine) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		replacements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_replacements_total", Help: "Servers replaced or created by the controller, by reason.",
		}, []string{"service", "reason"}),
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_drift_detections_total", Help: "Drift detected in servers, by kind (exec, config, file).",
		}, []string{"service", "kind"}),
		rollouts: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kiln_rollout_duration_seconds", Help: "How long rollouts took, by outcome.",
			Buckets: []float64{1, 2, 5, 10, 20, 30, 60, 120, 300},
		}, []string{"service", "outcome"}),
		probes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kiln_health_check_duration_seconds", Help: "Latency of the health checks of servers in rotation.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"service"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_pipeline_runs_total", Help: "Pipeline runs that ended, by outcome.",
		}, []string{"pipeline", "state"}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kiln_pipeline_stage_duration_seconds", Help: "How long pipeline stages took.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60, 120},
		}, []string{"pipeline", "stage"}),
		stateWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_state_write_errors_total", Help: "Writes to the state (outcomes, rollouts, runs, stages, events) that failed and were logged, by what was written.",
		}, []string{"write"}),
	}
	m.reg.MustRegister(m.replacements, m.drift, m.rollouts, m.probes, m.runs, m.stages, m.stateWrites,
		&serversCollector{e: e}, &doorCollector{e: e},
		collectors.NewBuildInfoCollector(),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// replaced counts a replacement of the service's server for reason kind.
func (m *metrics) replaced(service string, kind reasonKind) {
	m.replacements.WithLabelValues(service, kind.label()).Inc()
}

// serversCollector reports servers by service and state, as the runtime reports them at
// scrape time.
type serversCollector struct{ e *Engine }

var serversDesc = prometheus.NewDesc("kiln_servers", "Servers by service and state, as the runtime reports them.", []string{"service", "state"}, nil)

func (c *serversCollector) Describe(ch chan<- *prometheus.Desc) { ch <- serversDesc }

func (c *serversCollector) Collect(ch chan<- prometheus.Metric) {
	if c.e.opts.Driver == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	servers, err := c.e.opts.Driver.List(ctx, driver.Selector{Project: c.e.opts.Project})
	if err != nil {
		return
	}
	counts := map[[2]string]int{}
	for _, s := range servers {
		counts[[2]string{s.Service, string(s.State)}]++
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(serversDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
}

// Metrics serves the engine's metrics in the Prometheus text format.
func (e *Engine) Metrics() http.Handler {
	return promhttp.HandlerFor(e.metrics.reg, promhttp.HandlerOpts{})
}

// doorCollector reports the front doors' requests and latency, from the door process's
// counters (since the door started) at scrape time.
type doorCollector struct{ e *Engine }

var (
	doorRequestsDesc = prometheus.NewDesc("kiln_frontdoor_requests_total", "Requests answered by a service's front door, by status code.", []string{"service", "code"}, nil)
	doorLatencyDesc  = prometheus.NewDesc("kiln_frontdoor_request_duration_seconds", "Latency of requests through a service's front door.", []string{"service"}, nil)
)

func (c *doorCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- doorRequestsDesc
	ch <- doorLatencyDesc
	ch <- revisionRequestsDesc
	ch <- revisionErrorsDesc
	ch <- revisionLatencyDesc
	ch <- canaryWeightDesc
	ch <- canaryStepDesc
}

func (c *doorCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stats, err := c.e.doors.Stats(ctx)
	if err != nil {
		return
	}
	defer c.e.collectCanaries(ch)
	defer c.e.revs.collect(ch)
	for service, st := range stats {
		c.e.revs.add(service, st.Groups, c.e.revisionsOf(service))
		for code, n := range st.Codes {
			ch <- prometheus.MustNewConstMetric(doorRequestsDesc, prometheus.CounterValue, float64(n), service, code)
		}
		buckets := make(map[float64]uint64, len(door.LatencyBuckets))
		var cum uint64
		for i, le := range door.LatencyBuckets {
			if i < len(st.Buckets) {
				cum += st.Buckets[i]
			}
			buckets[le] = cum
		}
		ch <- prometheus.MustNewConstHistogram(doorLatencyDesc, st.Count, st.Sum, buckets, service)
	}
}
