package harness

import (
	"math"
	"strings"
	"testing"
	"time"
)

// The example of GitHub's documentation on validating webhook deliveries.
func TestWebhookSignature(t *testing.T) {
	got := webhookSignature("It's a Secret to Everybody", []byte("Hello, World!"))
	if want := "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"; got != want {
		t.Errorf("signature %s, want %s", got, want)
	}
}

func TestSetGreeting(t *testing.T) {
	src := "image \"hello\" {\n  file \"/etc/hello/greeting.txt\" {\n    content = \"Hello from kiln!\\n\"\n  }\n}\n"
	got, err := setGreeting(src, `Hello from run 2 of "fast-code"`)
	if err != nil {
		t.Fatal(err)
	}
	if want := `    content = "Hello from run 2 of \"fast-code\"\n"` + "\n"; !strings.Contains(got, want) {
		t.Errorf("the greeting line is not %q:\n%s", want, got)
	}
	for _, bad := range []string{
		strings.Replace(src, "Hello", "Howdy", 1),          // the check looks for Hello
		src + "file \"x\" {\n    content = \"Hello\"\n}\n", // two greetings: which one?
		"image \"hello\" {}\n",
	} {
		if _, err := setGreeting(bad, "Hello"); err == nil {
			t.Errorf("a spec of another shape was taken:\n%s", bad)
		}
	}
}

func TestTookIn(t *testing.T) {
	log := "checked out 1a2b3c into a clean directory\nimage bench-pipe-hello@sha256:ab ready in the engine (350ms)\ncandidate kiln-x-candidate-1 started (1.204s)\n"
	if v := tookIn(loadTook, log); math.Abs(v-0.35) > 1e-9 {
		t.Errorf("image load %v", v)
	}
	if v := tookIn(candidateTook, log); math.Abs(v-1.204) > 1e-9 {
		t.Errorf("candidate %v", v)
	}
	if v := tookIn(createdTook, "server kiln-x-1 created from revision 3 at 127.0.0.1:3301 in 685ms"); math.Abs(v-0.685) > 1e-9 {
		t.Errorf("created %v", v)
	}
	if !math.IsNaN(tookIn(loadTook, "nothing")) || !math.IsNaN(tookIn(loadTook, "ready in the engine (soon)")) {
		t.Error("no duration gave a number")
	}
}

// One run: every time in seconds after the commit started.
func samplePipelineRun() pipelineSample {
	return pipelineSample{
		Git: 0.02, First: 2.0, Queued: 0.06, Started: 0.07, Finished: 2.2,
		Stages: map[string][2]float64{"bake": {0.08, 0.7}, "test": {0.71, 1.4}, "deploy": {1.41, 2.19}},
		Load:   0.3, CandAPI: 0.35, SrvAPI: 0.4, Admitted: 1.95,
		GoBuild: 0.45, GoOther: 0.05,
		CandCreate: 1.0, CandStart: 1.05, CandKill: 1.3,
		SrvCreate: 1.5, SrvStart: 1.9,
	}
}

func TestPipelineSteps(t *testing.T) {
	m := pipelineSteps(samplePipelineRun())
	// inherent = git 0.02 + go build 0.45 + image load 0.3 + candidate 0.35 + its health
	// wait (1.3 − 1.05) + server 0.4 + its wait (1.95 − 1.9) = 1.82
	want := map[string]float64{
		stFrontDoor:                          2.0,
		"queued → run started":               0.01,
		"bake stage (checkout, parse, bake)": 0.62,
		"test: candidate start → destroy begins (health gate + checks)":                     0.25,
		"deploy: admitted → front door answers with it":                                     0.05,
		"deploy: rest of the stage after the first new answer":                              0.19,
		"inherent: git commit + go build + image load + server create/start + health waits": 1.82,
		stOverhead:                            0.18,
		stOverheadPct:                         9,
		stOverLoad:                            0.48,
		stOverLoadPct:                         24,
		"kiln overhead without the detection": 0.14, // 0.18 − (0.06 − 0.02)
	}
	for k, w := range want {
		if g, ok := m[k]; !ok || math.Abs(g-w) > 1e-9 {
			t.Errorf("%s = %v (%v), want %v", k, g, ok, w)
		}
	}
	for k := range m {
		if !strings.Contains(strings.Join(pipelineMetrics, "\n"), k) {
			t.Errorf("%q is not among pipelineMetrics", k)
		}
	}
	// Without the candidate's events, what needs them is left out, the rest stays.
	s := samplePipelineRun()
	s.CandKill = math.NaN()
	m = pipelineSteps(s)
	for _, k := range []string{stOverhead, stOverheadPct, "test: candidate start → destroy begins (health gate + checks)"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s computed without the candidate's kill", k)
		}
	}
	if m[stFrontDoor] != 2.0 {
		t.Error("the total was lost")
	}
}

func TestPipelineContainers(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	evs := parseContainerEvents(eventLines(t0,
		"-1 create|old|kiln/img:a|web|2", // before the commit
		"1.0 create|cand|kiln/img:b|web-candidate|3",
		"1.05 start|cand|kiln/img:b|web-candidate|3",
		"1.3 kill|cand|kiln/img:b|web-candidate|3",
		"1.5 create|new1|kiln/img:b|web|3",
		"1.6 create|new2|kiln/img:b|web|3",
		"1.7 start|new2|kiln/img:b|web|3",
		"1.9 start|new1|kiln/img:b|web|3",
	))
	s := pipelineSample{CandCreate: math.NaN(), CandStart: math.NaN(), CandKill: math.NaN(), SrvCreate: math.NaN(), SrvStart: math.NaN()}
	pipelineContainers(&s, evs, "web", t0)
	for name, got := range map[string][2]float64{"candidate create": {s.CandCreate, 1.0}, "candidate start": {s.CandStart, 1.05},
		"candidate kill": {s.CandKill, 1.3}, "server create": {s.SrvCreate, 1.5}, "that server's start": {s.SrvStart, 1.9}} {
		if math.Abs(got[0]-got[1]) > 1e-6 {
			t.Errorf("%s at %v, want %v", name, got[0], got[1])
		}
	}
}
