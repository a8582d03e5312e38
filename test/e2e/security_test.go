package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func randomCanary(t *testing.T, what string) string {
	t.Helper()
	b := make([]byte, 12)
	rand.Read(b)
	return what + "-canary-" + hex.EncodeToString(b)
}

// apiGet GETs path from the daemon with token and returns the body.
func apiGet(t *testing.T, base, token, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// dashboardPages signs in to the dashboard with token and returns the HTML of each page
// named, by path.
func dashboardPages(t *testing.T, base, token string, paths ...string) map[string]string {
	t.Helper()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.PostForm(base+"/login", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie string
	for _, c := range resp.Cookies() {
		cookie = c.Name + "=" + c.Value
	}
	if cookie == "" {
		t.Fatalf("signing in to the dashboard: status %d, no cookie", resp.StatusCode)
	}
	pages := map[string]string{}
	for _, p := range paths {
		req, _ := http.NewRequest(http.MethodGet, base+p, nil)
		req.Header.Set("Cookie", cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("dashboard %s: status %d", p, resp.StatusCode)
		}
		pages[p] = string(b)
	}
	return pages
}

// TestSecretCanary gives a service a secret (from the daemon's environment, as env and
// as a file) and a sensitive variable, and searches everything kiln writes or shows for
// them after a plan, an apply, a failed rollout rolled back, logs, events, status, the
// API, /metrics, every dashboard page, docker inspect of every server and every file
// under .kiln/: no value may appear outside the servers' own environment and secret
// file.
func TestSecretCanary(t *testing.T) {
	d := newDeployment(t)
	secretValue, sensitiveValue := randomCanary(t, "secret"), randomCanary(t, "sensitive")
	editSpec(t, d.dir, `image "hello" {`, `variable "api_key" {
  sensitive = true
}

secret "greeting" {
  env = "KILN_TEST_GREETING"
}

image "hello" {`)
	editSpec(t, d.dir, `  writable = ["/tmp"]`, `  writable = ["/tmp"]
  env = {
    GREETING_FILE = "/run/secrets/greeting"
    API_KEY       = var.api_key
    DATABASE_URL  = "postgres://app:${secret.greeting}@db/app"
  }
  secret_files = {
    "/run/secrets/greeting" = secret.greeting
  }`)
	d.env = append(d.env, "KILN_TEST_GREETING="+secretValue, "KILN_VAR_api_key="+sensitiveValue)
	d.startDaemon("revision 1 deployed", "up")

	// The secret reached the servers: they serve their secret file as the greeting.
	if body := d.get("/"); !strings.Contains(body, secretValue) {
		t.Fatalf("the server does not read its secret file: %q", body)
	}
	var outputs []string
	record := func(what string, r result) {
		outputs = append(outputs, what+":\n"+r.stdout+r.stderr)
	}
	record("plan", d.kiln(nil, "plan", "-var", "version=2"))
	record("apply", d.kiln(nil, "apply", "-var", "version=2"))
	// A failed rollout, rolled back: its errors are written everywhere.
	editSpec(t, d.dir, `http     = "/healthz"`, `http     = "/no-such-check"`)
	editSpec(t, d.dir, `progress_deadline = "30s"`, `progress_deadline = "3s"`)
	failed := d.kiln(nil, "apply", "-var", "version=3")
	if failed.code == 0 {
		t.Errorf("the rollout with a failing check succeeded:\n%s%s", failed.stdout, failed.stderr)
	}
	record("failed apply", failed)
	record("logs", d.kiln(nil, "logs", d.service))
	record("events", d.kiln(nil, "events", "-json"))
	record("status", d.kiln(nil, "status", "-json"))
	record("history", d.kiln(nil, "history", d.service))

	api, token := readState(t, d.dir, "api.addr"), readState(t, d.dir, "token")
	for _, p := range []string{"/v1/status", "/v1/events", "/v1/pipelines", "/v1/runs", "/metrics",
		"/v1/services/" + d.service + "/logs", "/v1/services/" + d.service + "/history"} {
		code, body := apiGet(t, api, token, p)
		outputs = append(outputs, fmt.Sprintf("GET %s (%d):\n%s", p, code, body))
	}
	pages := dashboardPages(t, api, token, "/", "/services/"+d.service, "/events", "/pipelines", "/images")
	for p, html := range pages {
		outputs = append(outputs, "dashboard "+p+":\n"+html)
	}
	ids := strings.Fields(sh(t, d.dir, nil, "docker", "ps", "-aq", "--filter", "label=dev.kiln.service="+d.service))
	if len(ids) == 0 {
		t.Fatal("no servers to inspect")
	}
	for _, id := range ids {
		out := sh(t, d.dir, nil, "docker", "inspect", id)
		var c []map[string]any
		if err := json.Unmarshal([]byte(out), &c); err != nil {
			t.Fatal(err)
		}
		env := c[0]["Config"].(map[string]any)["Env"]
		delete(c[0]["Config"].(map[string]any), "Env") // the server's own environment
		rest, _ := json.Marshal(c)
		outputs = append(outputs, "docker inspect "+id+":\n"+string(rest))
		if !strings.Contains(fmt.Sprint(env), sensitiveValue) || !strings.Contains(fmt.Sprint(env), "postgres://app:"+secretValue+"@db/app") {
			t.Errorf("server %s lacks its secret environment", id)
		}
	}
	outputs = append(outputs, "daemon output:\n"+d.logs.String())
	d.stopDaemon(syscall.SIGINT) // the state files, WAL included, as they are left

	files := 0
	filepath.WalkDir(filepath.Join(d.dir, ".kiln"), func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return nil
		}
		b, _ := os.ReadFile(p)
		files++
		for _, v := range []string{secretValue, sensitiveValue} {
			if bytes.Contains(b, []byte(v)) {
				t.Errorf("%s holds a secret value in plain text", p)
			}
		}
		return nil
	})
	found := 0
	for _, out := range outputs {
		for _, v := range []string{secretValue, sensitiveValue} {
			if i := strings.Index(out, v); i >= 0 {
				found++
				what, _, _ := strings.Cut(out, "\n")
				t.Errorf("%s shows a secret value: ...%s...", what, out[max(0, i-200):min(len(out), i+100)])
			}
		}
	}
	t.Logf("searched %d outputs and %d files under .kiln/ for 2 canaries: %d occurrences", len(outputs), files, found)
}

// TestStateIsPrivate: .kiln/ is 0700 and every file in it 0600 (or 0700), including
// one an older kiln left readable, the database's WAL and the image store's blobs.
func TestStateIsPrivate(t *testing.T) {
	d := newDeployment(t)
	os.MkdirAll(filepath.Join(d.dir, ".kiln"), 0o755)
	os.Chmod(filepath.Join(d.dir, ".kiln"), 0o755)
	os.WriteFile(filepath.Join(d.dir, ".kiln", "project"), []byte("0123456789ab\n"), 0o644)
	os.Chmod(filepath.Join(d.dir, ".kiln", "project"), 0o644)
	d.startDaemon("revision 1 deployed", "up")
	n := 0
	filepath.WalkDir(filepath.Join(d.dir, ".kiln"), func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return nil
		}
		n++
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: other users can read it", p, info.Mode().Perm())
		}
		return nil
	})
	t.Logf("%d entries under .kiln/ checked", n)
}

// TestReadOnlyTokenReadsNothingSecret: the read-only token gets no pipeline variable,
// webhook secret or repository credential from the API (it could sign webhooks with
// the secret), and cannot change anything.
func TestReadOnlyTokenReadsNothingSecret(t *testing.T) {
	d := newDeployment(t)
	webhookSecret := randomCanary(t, "webhook")
	editSpec(t, d.dir, `image "hello" {`, `variable "webhook_secret" {
  sensitive = true
}

image "hello" {`)
	newPipelineRepo(t, d, `  repo           = "https://kiln:tok3n-in-url@git.invalid/hello.git"
  poll           = "0s"
  webhook_secret = var.webhook_secret`)
	d.env = append(d.env, "KILN_VAR_webhook_secret="+webhookSecret)
	d.startDaemon("revision 1 deployed", "up")
	api, ro := readState(t, d.dir, "api.addr"), readState(t, d.dir, "token.readonly")
	code, body := apiGet(t, api, ro, "/v1/pipelines")
	if code != http.StatusOK || !strings.Contains(body, `"name":"hello"`) {
		t.Fatalf("GET /v1/pipelines with the read-only token: %d %s", code, body)
	}
	for _, leak := range []string{webhookSecret, "tok3n-in-url", `"vars"`} {
		if strings.Contains(body, leak) {
			t.Errorf("GET /v1/pipelines shows %q: %s", leak, body)
		}
	}
	pages := dashboardPages(t, api, ro, "/pipelines")
	if strings.Contains(pages["/pipelines"], "tok3n-in-url") || strings.Contains(pages["/pipelines"], webhookSecret) {
		t.Error("the pipelines page shows the repository's credentials or the webhook secret")
	}
	for _, ev := range []string{d.kiln(nil, "events").stdout, d.logs.String()} {
		if strings.Contains(ev, "tok3n-in-url") {
			t.Errorf("events show the repository's credentials:\n%s", ev)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, api+"/v1/pipelines/hello/trigger", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+ro)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("trigger with the read-only token: %v %v", resp, err)
	}
}

// attack is a commit to a watched branch that tries to take something it must not.
type attack struct {
	name  string
	apply func(t *testing.T, dir string) // changes the working tree
	// detail is a regular expression for what the run's failure must say.
	detail string
}

// TestPipelineCommitsCannotTakeTheHost commits, one by one, what an author of a watched
// branch could try: run code as the daemon through the Go build, read the daemon's
// token or other host files into the image, add a secret that runs a command, crash
// the parser or exhaust memory. Each run fails with a clear cause, nothing leaks, the
// daemon and the front door stay up and the live revision keeps serving.
func TestPipelineCommitsCannotTakeTheHost(t *testing.T) {
	d := newDeployment(t)
	first := newPipelineRepo(t, d, `  repo = "."
  poll = "1s"`)
	marker := filepath.Join(t.TempDir(), "ran-as-daemon")
	d.startDaemon("revision 1 deployed", "up")
	if r := d.runOf(first, 90*time.Second); r.State != "succeeded" {
		t.Fatalf("the first run: %+v", r)
	}
	specPath := filepath.Join(d.dir, "kiln.hcl")
	good, _ := os.ReadFile(specPath)
	token := filepath.Join(d.dir, ".kiln", "token")
	replace := func(old, new string) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			if !bytes.Contains(good, []byte(old)) {
				t.Fatalf("the spec has no %q", old)
			}
			os.WriteFile(specPath, bytes.Replace(good, []byte(old), []byte(new), 1), 0o644)
		}
	}
	deep := strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000)
	attacks := []attack{
		{"toolexec through GOFLAGS", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "x.sh"), []byte("#!/bin/sh\ntouch "+marker+"\nexec \"$@\"\n"), 0o755)
			replace(`package = "."`, `package = "."
    env     = { GOFLAGS = "-toolexec=./x.sh" }`)(t, dir)
		}, "GOFLAGS"},
		{"the daemon's token by absolute path", replace(`copy "static" {`, `copy "`+token+`" {
    to = "/token"
  }
  copy "static" {`), "outside the directory the bake is confined to|inside its checkout"},
		{"a file outside the checkout by ..", replace(`copy "static" {`, `copy "../../../../../../../etc/passwd" {
    to = "/passwd"
  }
  copy "static" {`), "outside the directory the bake is confined to|inside its checkout"},
		{"a host file through a symbolic link", func(t *testing.T, dir string) {
			os.Symlink(filepath.Dir(token), filepath.Join(dir, "state"))
			replace(`copy "static" {`, `copy "state/token" {
    to = "/token"
  }
  copy "static" {`)(t, dir)
		}, "symbolic link on the way leads outside"},
		{"a host file through file()", replace(`content = "Hello from kiln!\n"`, `content = file("/etc/hostname")`), "inside its checkout|outside"},
		{"an endless file through file()", replace(`content = "Hello from kiln!\n"`, `content = file("zero")`), "zero"},
		{"a secret of its own that runs a command", replace(`image "hello" {`, `secret "x" {
  command = ["sh", "-c", "touch `+marker+`"]
}

image "hello" {`), "never add one"},
		{"a self-referencing OCI layout as the base", func(t *testing.T, dir string) {
			fake := strings.Repeat("ab", 32)
			index := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:` + fake + `","size":200}]}`
			os.MkdirAll(filepath.Join(dir, "base", "blobs", "sha256"), 0o755)
			os.WriteFile(filepath.Join(dir, "base", "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
			os.WriteFile(filepath.Join(dir, "base", "index.json"), []byte(index), 0o644)
			os.WriteFile(filepath.Join(dir, "base", "blobs", "sha256", fake), []byte(index), 0o644)
			replace(`from = "scratch"`, `from = "./base"`)(t, dir)
		}, "digest|size|larger|cycle|nest"},
		{"a front door on every address", replace(`listen   = var.listen`, `listen   = "0.0.0.0:18999"`), "cannot; apply the spec"},
		{"servers on a cluster of its choosing", replace(`image "hello" {`, `runtime "kubernetes" {
  kubeconfig = "/tmp/attacker/kubeconfig"
}

image "hello" {`), "a commit cannot move them"},
		{"the daemon querying an address of its choosing", replace(`    strategy          = "rolling"`, `    strategy          = "canary"
    analysis {
      prometheus = "http://169.254.169.254/latest"
      query "x" {
        query = "up"
        max   = 1
      }
    }`), "a commit cannot choose what the daemon queries"},
		{"a spec nested 100,000 deep", replace(`variable "version" {`, "variable \"deep\" {\n  default = "+deep+"\n}\n\nvariable \"version\" {"), "nest"},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			if a.name == "an endless file through file()" {
				os.Symlink("/dev/zero", filepath.Join(d.dir, "zero"))
			}
			a.apply(t, d.dir)
			sh(t, d.dir, gitEnv, "git", "add", "-A", ".")
			commit := d.commit(a.name)
			r := d.runOf(commit, 90*time.Second)
			if r.State != "failed" || !regexp.MustCompile(a.detail).MatchString(r.Detail) {
				t.Errorf("run of %q: %s: %s; want failed with %q", a.name, r.State, r.Detail, a.detail)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Errorf("the commit ran its code on the host")
			}
			if body := d.get("/"); !strings.Contains(body, "Hello from kiln!") {
				t.Errorf("after the attack the front door answers %q", body)
			}
			if r := d.kiln(nil, "status"); r.code != 0 {
				t.Errorf("the daemon stopped answering: %s", r.stderr)
			}
			// Undo it for the next one.
			os.WriteFile(specPath, good, 0o644)
			for _, f := range []string{"x.sh", "state", "zero", "base"} {
				os.RemoveAll(filepath.Join(d.dir, f))
			}
			sh(t, d.dir, gitEnv, "git", "add", "-A", ".")
			exec.Command("git", "-C", d.dir, "commit", "-qm", "undo "+a.name).Run()
		})
	}
}
