package e2e

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

var gitEnv = []string{"GIT_AUTHOR_NAME=k", "GIT_AUTHOR_EMAIL=k@example.com", "GIT_COMMITTER_NAME=k", "GIT_COMMITTER_EMAIL=k@example.com"}

type runJSON struct {
	ID      int64
	Commit  string
	State   string
	Detail  string
	Trigger string
}

func (d *deployment) runs() []runJSON {
	d.t.Helper()
	var rs []runJSON
	r := d.kiln(nil, "pipeline", "runs", "-json")
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rs) != nil {
		d.t.Fatalf("pipeline runs: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	return rs
}

// runOf waits for the run of commit to end and returns it.
func (d *deployment) runOf(commit string, timeout time.Duration) runJSON {
	d.t.Helper()
	var found runJSON
	eventually(d.t, timeout, "the run of "+commit[:8]+" to end", func() bool {
		for _, r := range d.runs() {
			if r.Commit == commit && r.State != "queued" && r.State != "running" {
				found = r
				return true
			}
		}
		return false
	})
	return found
}

func (d *deployment) commit(msg string) string {
	d.t.Helper()
	sh(d.t, d.dir, gitEnv, "git", "commit", "-qam", msg)
	return sh(d.t, d.dir, nil, "git", "rev-parse", "HEAD")
}

// TestPipeline: commits to a real git repository are baked from a clean checkout,
// tested on candidates, and deployed with no failed request; a commit that fails its
// test never reaches the live servers; a webhook delivered five times gives one run; a
// restart mid-run leaves no candidate behind and the run marked interrupted.
func TestPipeline(t *testing.T) {
	d := newDeployment(t)
	spec, _ := os.ReadFile(filepath.Join(d.dir, "kiln.hcl"))
	os.WriteFile(filepath.Join(d.dir, "kiln.hcl"), append(spec, []byte(`
pipeline "hello" {
  repo           = "."
  branch         = "main"
  poll           = "1s"
  services       = ["`+d.service+`"]
  webhook_secret = "s3cret"

  check "greets" {
    path = "/"
    body = "Hello"
  }
  check "healthz" {
    command = ["sh", "-c", "test \"$(wget -qO- $KILN_CANDIDATE_URL/healthz 2>/dev/null || curl -fsS $KILN_CANDIDATE_URL/healthz)\" = ok"]
  }
}
`)...), 0o644)
	os.WriteFile(filepath.Join(d.dir, ".gitignore"), []byte(".kiln/\n"), 0o644)
	sh(t, d.dir, gitEnv, "git", "init", "-q", "-b", "main")
	sh(t, d.dir, gitEnv, "git", "add", ".")
	sh(t, d.dir, gitEnv, "git", "commit", "-qm", "first")
	first := sh(t, d.dir, nil, "git", "rev-parse", "HEAD")
	d.startDaemon("revision 1 deployed", "up")
	if r := d.runOf(first, 60*time.Second); r.State != "succeeded" {
		t.Fatalf("run of the first commit: %+v\n%s", r, d.kiln(nil, "pipeline", "show", "1").stdout)
	}

	// A new greeting is built, tested and deployed under load, with no failed request.
	// The greeting the service answers with is a file block of the spec.
	main := filepath.Join(d.dir, "kiln.hcl")
	src, _ := os.ReadFile(main)
	greet := func(s string) []byte {
		return bytes.Replace(src, []byte(`"Hello from kiln!\n"`), []byte(`"`+s+`\n"`), 1)
	}
	os.WriteFile(main, greet("Hello from the pipeline!"), 0o644)
	l := startLoad(d.url, 4)
	second := d.commit("greet from the pipeline")
	r := d.runOf(second, 90*time.Second)
	l.finish(t, "pipeline deploy")
	if r.State != "succeeded" || !strings.Contains(d.get("/"), "Hello from the pipeline!") {
		t.Fatalf("second commit: %+v, front door %q\n%s", r, d.get("/"), d.kiln(nil, "pipeline", "show", "2").stdout)
	}
	show := d.kiln(nil, "pipeline", "show", "2").stdout
	for _, want := range []string{"== bake: succeeded", "== test: succeeded", "== deploy: succeeded", `check "greets" passed`, "candidate", "destroyed"} {
		if !strings.Contains(show, want) {
			t.Errorf("pipeline show lacks %q:\n%s", want, show)
		}
	}
	// Candidates are torn down while the deploy runs, and are gone when the run is over.
	if out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=dev.kiln.service="+d.service+"-candidate").Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("candidates left after the run: %s", out)
	}

	// A commit whose candidate fails its check never reaches the live servers.
	os.WriteFile(main, greet("Goodbye"), 0o644)
	third := d.commit("break the greeting")
	if r := d.runOf(third, 90*time.Second); r.State != "failed" || !strings.Contains(r.Detail, "test") {
		t.Fatalf("a failing commit: %+v", r)
	}
	if body := d.get("/"); !strings.Contains(body, "Hello from the pipeline!") {
		t.Fatalf("a failed test reached the live servers: %q", body)
	}

	// The same webhook five times: one run. Unsigned calls are refused.
	os.WriteFile(main, greet("Hello again!"), 0o644)
	fourth := d.commit("hello again")
	addr, _ := os.ReadFile(filepath.Join(d.dir, ".kiln", "api.addr"))
	url := strings.TrimSpace(string(addr)) + "/v1/pipelines/hello/webhook"
	body := []byte(`{"ref":"refs/heads/main","after":"` + fourth + `"}`)
	mac := hmac.New(sha256.New, []byte("s3cret"))
	mac.Write(body)
	for range 5 {
		req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Errorf("signed webhook: status %d", resp.StatusCode)
		}
	}
	if resp, err := http.Post(url, "application/json", bytes.NewReader(body)); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unsigned webhook: %v %v", resp.StatusCode, err)
	}
	d.runOf(fourth, 90*time.Second)
	n := 0
	for _, r := range d.runs() {
		if r.Commit == fourth {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d runs of one commit delivered five times", n)
	}

	// kill -9 mid-run: after a restart, no candidate is left and the run is interrupted.
	os.WriteFile(main, greet("Hello, interrupted!"), 0o644)
	fifth := d.commit("to be interrupted")
	eventually(t, 60*time.Second, "a candidate of the fifth commit", func() bool {
		out, _ := exec.Command("docker", "ps", "-q", "--filter", "label=dev.kiln.service="+d.service+"-candidate").Output()
		return len(strings.TrimSpace(string(out))) > 0
	})
	d.stopDaemon(syscall.SIGKILL)
	d.startDaemon("API on", "serve")
	eventually(t, 30*time.Second, "the candidates to be removed", func() bool {
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=dev.kiln.service="+d.service+"-candidate").Output()
		return len(strings.TrimSpace(string(out))) == 0
	})
	if r := d.runOf(fifth, 10*time.Second); r.State != "interrupted" {
		t.Errorf("the killed run is %+v, want interrupted", r)
	}

	// The dashboard shows the runs, their stages and logs.
	api := readState(t, d.dir, "api.addr")
	ctx := browse(t)
	signIn(t, ctx, api, readState(t, d.dir, "token"))
	do(t, ctx, "the pipelines page", 30*time.Second,
		chromedp.Navigate(api+"/pipelines"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-run] .badge`)))
	runs := get(t, ctx, "read the runs", 10*time.Second, chromedp.Text(chromedp.CSS("main")))
	for _, want := range []string{second[:12], "interrupted", "failed", "succeeded", "bake", "deploy", "signed webhook"} {
		if !strings.Contains(runs, want) {
			t.Errorf("the pipelines page lacks %q:\n%s", want, runs)
		}
	}
	shoot(t, ctx, "pipelines-runs")
	var secondRun int64
	for _, r := range d.runs() {
		if r.Commit == second {
			secondRun = r.ID
		}
	}
	do(t, ctx, "a run's page", 30*time.Second,
		chromedp.Navigate(fmt.Sprintf("%s/runs/%d", api, secondRun)),
		chromedp.WaitVisible(chromedp.CSS(".stage pre")))
	page := get(t, ctx, "read the run", 10*time.Second, chromedp.Text(chromedp.CSS("main")))
	for _, want := range []string{"bake", "test", "deploy", `check "greets" passed`, second} {
		if !strings.Contains(page, want) {
			t.Errorf("the run page lacks %q", want)
		}
	}
	shoot(t, ctx, "run")
}

// newPipelineRepo makes the deployment's directory a git repository whose spec has a
// pipeline deploying the service, with extra pipeline settings.
func newPipelineRepo(t *testing.T, d *deployment, settings string) string {
	t.Helper()
	spec, _ := os.ReadFile(filepath.Join(d.dir, "kiln.hcl"))
	os.WriteFile(filepath.Join(d.dir, "kiln.hcl"), append(spec, []byte(`
pipeline "hello" {
  services = ["`+d.service+`"]
`+settings+`
}
`)...), 0o644)
	os.WriteFile(filepath.Join(d.dir, ".gitignore"), []byte(".kiln/\n"), 0o644)
	sh(t, d.dir, gitEnv, "git", "init", "-q", "-b", "main")
	sh(t, d.dir, gitEnv, "git", "add", ".")
	sh(t, d.dir, gitEnv, "git", "commit", "-qm", "first")
	return sh(t, d.dir, nil, "git", "rev-parse", "HEAD")
}

// TestPipelineFailures: a commit with an invalid spec fails at bake with the spec's
// diagnostics; a commit whose rollout fails is rolled back and fails its run; two quick
// commits end with the newer one deployed. The live revision is untouched by failures.
func TestPipelineFailures(t *testing.T) {
	d := newDeployment(t)
	first := newPipelineRepo(t, d, `  repo = "."
  poll = "1s"`)
	d.startDaemon("revision 1 deployed", "up")
	d.runOf(first, 60*time.Second)
	specPath := filepath.Join(d.dir, "kiln.hcl")
	good, _ := os.ReadFile(specPath)

	os.WriteFile(specPath, bytes.Replace(good, []byte("replicas = 2"), []byte("replicas = \"two\""), 1), 0o644)
	bad := d.commit("an invalid spec")
	r := d.runOf(bad, 60*time.Second)
	if r.State != "failed" || !strings.Contains(r.Detail, "bake") {
		t.Fatalf("invalid spec run: %+v", r)
	}
	if show := d.kiln(nil, "pipeline", "show", fmt.Sprint(r.ID)); !strings.Contains(show.stdout, "on kiln.hcl line") {
		t.Errorf("the bake log lacks the spec's diagnostics: exit %d\n%s%s", show.code, show.stdout, show.stderr)
	}

	// Servers that pass the candidate test but cannot stay healthy long enough for the
	// rollout's min_healthy within its deadline: the rollout fails and is rolled back.
	slow := bytes.Replace(good, []byte(`min_healthy       = "1s"`), []byte(`min_healthy       = "10s"`), 1)
	slow = bytes.Replace(slow, []byte(`progress_deadline = "30s"`), []byte(`progress_deadline = "3s"`), 1)
	slow = bytes.Replace(slow, []byte(`"Hello from kiln!\n"`), []byte(`"Hello, never deployed!\n"`), 1)
	os.WriteFile(specPath, slow, 0o644)
	failing := d.commit("a rollout that fails")
	if r := d.runOf(failing, 90*time.Second); r.State != "failed" || !strings.Contains(r.Detail, "rolled_back") {
		t.Fatalf("failing rollout run: %+v", r)
	}
	if body := d.get("/"); !strings.Contains(body, "Hello from kiln!") {
		t.Fatalf("after a rolled-back run the front door answers %q", body)
	}

	// Two quick commits: the newer one is what ends up serving.
	os.WriteFile(specPath, bytes.Replace(good, []byte(`"Hello from kiln!\n"`), []byte(`"Hello, one!\n"`), 1), 0o644)
	d.commit("one")
	os.WriteFile(specPath, bytes.Replace(good, []byte(`"Hello from kiln!\n"`), []byte(`"Hello, two!\n"`), 1), 0o644)
	two := d.commit("two")
	if r := d.runOf(two, 90*time.Second); r.State != "succeeded" {
		t.Fatalf("run of the newer commit: %+v", r)
	}
	if body := d.get("/"); !strings.Contains(body, "Hello, two!") {
		t.Errorf("after two quick commits the front door answers %q", body)
	}
}

// TestPipelineBadSource: a branch that does not exist and an unreachable repository are
// reported, in events and by trigger, with the cause.
func TestPipelineBadSource(t *testing.T) {
	d := newDeployment(t)
	newPipelineRepo(t, d, `  repo   = "."
  branch = "no-such-branch"
  poll   = "1s"`)
	d.startDaemon("revision 1 deployed", "up")
	r := d.kiln(nil, "pipeline", "trigger", "hello")
	if r.code != 1 || !strings.Contains(r.stderr, "no-such-branch") {
		t.Errorf("trigger of a missing branch: exit %d: %s", r.code, r.stderr)
	}
	eventually(t, 10*time.Second, "an event about the source", func() bool {
		return strings.Contains(d.kiln(nil, "events").stdout, "cannot read the source")
	})

	// An unreachable repository.
	editSpec(t, d.dir, `repo   = "."`, `repo   = "http://127.0.0.1:1/nothing.git"`)
	if r := d.kiln(nil, "apply"); r.code != 0 {
		t.Fatalf("apply: %s", r.stderr)
	}
	r = d.kiln(nil, "pipeline", "trigger", "hello")
	if r.code != 1 || !strings.Contains(r.stderr, "127.0.0.1:1") {
		t.Errorf("trigger of an unreachable repository: exit %d: %s", r.code, r.stderr)
	}
}

// TestPipelinePromote: after the deploy to the first service, the run promotes the same
// images to the next one, in order.
func TestPipelinePromote(t *testing.T) {
	d := newDeployment(t)
	prod := d.service + "-prod"
	t.Cleanup(func() {
		d.stopDaemon(syscall.SIGKILL) // first, or its controller would heal what is removed
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=dev.kiln.service="+prod).Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
		}
	})
	prodListen := freePort(t)
	d.env = append(d.env, "KILN_VAR_listen_prod="+prodListen)
	spec, _ := os.ReadFile(filepath.Join(d.dir, "kiln.hcl"))
	os.WriteFile(filepath.Join(d.dir, "kiln.hcl"), append(spec, []byte(`
variable "listen_prod" {}

service "`+prod+`" {
  image    = image.hello
  replicas = 1
  port     = 8080
  listen   = var.listen_prod

  health {
    http     = "/healthz"
    interval = "500ms"
  }
}
`)...), 0o644)
	first := newPipelineRepo(t, d, `  repo    = "."
  poll    = "1s"
  promote = ["`+prod+`"]`)
	d.startDaemon("revision 1 deployed", "up")
	d.runOf(first, 60*time.Second)

	specPath := filepath.Join(d.dir, "kiln.hcl")
	good, _ := os.ReadFile(specPath)
	os.WriteFile(specPath, bytes.Replace(good, []byte(`"Hello from kiln!\n"`), []byte(`"Hello, promoted!\n"`), 1), 0o644)
	c := d.commit("promote me")
	r := d.runOf(c, 90*time.Second)
	show := d.kiln(nil, "pipeline", "show", fmt.Sprint(r.ID)).stdout
	if r.State != "succeeded" || !strings.Contains(show, "== promote:"+prod+": succeeded") {
		t.Fatalf("run: %+v\n%s", r, show)
	}
	if strings.Index(show, "== deploy:") > strings.Index(show, "== promote:") {
		t.Errorf("promote ran before deploy:\n%s", show)
	}
	for _, url := range []string{d.url, "http://" + prodListen} {
		resp, err := http.Get(url + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "Hello, promoted!") {
			t.Errorf("%s answers %q", url, b)
		}
	}
}

// TestPipelineWatchesLocalRepo: a pipeline on a local repository notices a commit at
// once, not at its next poll (an hour away here).
func TestPipelineWatchesLocalRepo(t *testing.T) {
	d := newDeployment(t)
	first := newPipelineRepo(t, d, `  repo = "."
  poll = "1h"`)
	d.startDaemon("revision 1 deployed", "up")
	d.runOf(first, 60*time.Second) // the poll at start
	editSpec(t, d.dir, "Hello from kiln!", "Hello from a watched repository!")
	start := time.Now()
	second := d.commit("noticed by the watch")
	var queued time.Duration
	eventually(t, 15*time.Second, "a run of the new commit", func() bool {
		for _, r := range d.runs() {
			if r.Commit == second {
				queued = time.Since(start)
				return true
			}
		}
		return false
	})
	t.Logf("commit noticed within %s", queued.Round(time.Millisecond))
	if r := d.runOf(second, 90*time.Second); r.State != "succeeded" || r.Trigger != "poll" {
		t.Fatalf("run of the watched commit: %+v", r)
	}
}
