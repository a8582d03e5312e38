package kubernetes_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/driver/kubernetes"
	"github.com/kiln-build/kiln/internal/testenv/kube"
)

// Exec, attach and port-forward into kiln's pods through the API server, as its audit
// log records them. kwok's nodes run no process and the API server cannot reach their
// kubelet, so no request here starts one; what the log records of them is what it
// records of real ones (kube-apiserver 1.34, with the harness's policy: Metadata level,
// no RequestReceived stage), each at ResponseStarted and again at ResponseComplete
// with the same code:
//
//   - an exec refused by kiln's admission policy: 422 (a ValidatingAdmissionPolicy's
//     denial is Invalid unless it names another reason), not 403;
//   - a POST exec that does not upgrade the connection: 400 "Upgrade request
//     required", from the API server itself;
//   - an exec or attach upgrading to a WebSocket (kubectl since 1.30): 101, for the
//     API server upgrades the client's connection before it dials the kubelet: what a
//     real `kubectl exec` logs, whatever then happens in the pod;
//   - a port-forward upgrading to a WebSocket, and an exec upgrading to SPDY (kubectl
//     before 1.30): 500 "error dialing backend" here, for the API server dials the
//     kubelet first (kwok's serves a certificate it cannot verify); 101 on a real node.
//
// Those with 101 are drift.
func TestAuditLog(t *testing.T) {
	e := start(t, 2)
	c := e.cluster
	ctx := t.Context()
	d, err := kubernetes.Open(ctx, driver.Config{Project: "p", Options: map[string]string{
		kubernetes.OptionKubeconfig: c.Kubeconfig, kubernetes.OptionNamespace: namespace, kubernetes.OptionRegistry: e.registry,
		kubernetes.OptionAuditLog: c.AuditLog,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if !d.Capabilities().ExecEvents {
		t.Error("a driver with an audit log does not claim exec events")
	}
	_, members := runningSet(t, d, "web", 1)
	srv := members[0]
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := d.Watch(wctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the audit log:\n%s", auditSummary(c.AuditLog))
		}
	})

	a := newAPI(t, c)
	pod := "/api/v1/namespaces/" + namespace + "/pods/" + string(srv.ID)
	since := time.Now()
	// The policy Open installed takes a moment to be enforced, and an exec let through
	// meanwhile is drift: wait with one that gets no further than the API server.
	eventually(t, 20*time.Second, "the policy denies an admin's exec", func() (bool, string) {
		code, body := a.do(c.Token, "POST", pod+"/exec?command=id&stdout=true")
		return code == http.StatusUnprocessableEntity && strings.Contains(body, kubernetes.DeniedMessage), fmt.Sprint(code, body)
	})
	// Not drift: refused by the policy, and a request the API server refuses itself.
	if code, body := a.do(c.Token, "GET", pod+"/exec?command=id&stdout=true", webSocket(execProtocol)); code != http.StatusUnprocessableEntity {
		t.Errorf("an admin's exec: %d %s, want 422", code, body)
	}
	if code, body := a.do(c.BreakGlassToken, "POST", pod+"/exec?command=id&stdout=true"); code != http.StatusBadRequest {
		t.Errorf("a POST exec without upgrade: %d %s, want 400", code, body)
	}
	// Drift: an admin impersonating the break-glass group, and break-glass itself, who
	// gives the API server one audit ID for two requests (a client may: Audit-ID), which
	// must not hide the second.
	impersonate := http.Header{"Impersonate-User": {"jane"}, "Impersonate-Group": {"system:masters", kube.BreakGlassGroup}}
	reused := http.Header{"Audit-Id": {"kiln-test-reused"}}
	for _, r := range []struct {
		token, path string
		header      http.Header
	}{
		{c.Token, pod + "/exec?command=sh&command=-c&command=id&stdout=true", impersonate},
		{c.BreakGlassToken, pod + "/exec?command=id&command=-u&stdout=true&stderr=true", reused},
		{c.BreakGlassToken, pod + "/attach?stdout=true", reused},
	} {
		if code, body := a.do(r.token, "GET", r.path, webSocket(execProtocol), r.header); code != http.StatusSwitchingProtocols {
			t.Errorf("GET %s: %d %s, want 101", r.path, code, body)
		}
	}
	want := []string{
		"exec by kiln-test-admin (as jane) through the API server: sh -c id",
		"exec by kiln-test-break-glass through the API server: id -u",
		"attach by kiln-test-break-glass through the API server",
	}
	// Drift where the API server reaches the node's kubelet, which kwok's it does not.
	code, body := a.do(c.BreakGlassToken, "GET", pod+"/portforward?ports=8080", webSocket(portForwardProtocol))
	t.Logf("a port-forward over a WebSocket: %d %s", code, body)
	if code < 400 {
		want = append(want, "portforward by kiln-test-break-glass through the API server: port 8080")
	}
	var got []string
	timeout := time.After(20 * time.Second)
	var quiet <-chan time.Time // once all came: another would come right after its first
collect:
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the watch closed")
			}
			if ev.Type != driver.EventExec {
				continue
			}
			if ev.ServerID != srv.ID || ev.Service != "web" || ev.Project != "p" || ev.Time.Before(since.Add(-time.Second)) || time.Since(ev.Time) > time.Minute {
				t.Errorf("an exec event %+v, want one of server %s of service web, project p, at the time of the request (after %v)", ev, srv.ID, since)
			}
			got = append(got, ev.Detail)
			if len(got) == len(want) {
				quiet = time.After(2 * time.Second)
			}
		case <-quiet:
			break collect
		case <-timeout:
			break collect
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("exec events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestOptionFilesMissing: Open fails when a file a runtime option names is missing,
// naming the option and the file: the audit log, the kubelets' CA.
func TestOptionFilesMissing(t *testing.T) {
	e := start(t, 1)
	for _, opt := range []string{kubernetes.OptionAuditLog, kubernetes.OptionKubeletCA} {
		missing := filepath.Join(t.TempDir(), "missing")
		_, err := kubernetes.Open(t.Context(), driver.Config{Project: "p", Options: map[string]string{
			kubernetes.OptionKubeconfig: e.cluster.Kubeconfig, kubernetes.OptionNamespace: namespace, opt: missing,
		}})
		if err == nil || !strings.Contains(err.Error(), opt) || !strings.Contains(err.Error(), missing) {
			t.Errorf("Open with %s missing: %v, want an error naming %s and %s", opt, err, opt, missing)
		}
	}
}

// TestKubeletCredentials: kiln sends no token to a kubelet (a root user on the node
// could answer in its place): with kubelet_ca, a kubeconfig of a token user is refused
// unless kubelet_kubeconfig names another user for the kubelets.
func TestKubeletCredentials(t *testing.T) {
	e := start(t, 1)
	opts := map[string]string{kubernetes.OptionKubeconfig: e.cluster.Kubeconfig, kubernetes.OptionNamespace: namespace,
		kubernetes.OptionKubeletCA: e.cluster.KubeletCA}
	_, err := kubernetes.Open(t.Context(), driver.Config{Project: "p", Options: opts})
	if err == nil || !strings.Contains(err.Error(), kubernetes.OptionKubeletKubeconfig) || !strings.Contains(err.Error(), "token") {
		t.Errorf("Open with kubelet_ca and a token user: %v, want it refused, naming %s", err, kubernetes.OptionKubeletKubeconfig)
	}
	opts[kubernetes.OptionKubeletKubeconfig] = e.cluster.StatsKubeconfig
	d, err := kubernetes.Open(t.Context(), driver.Config{Project: "p", Options: opts})
	if err != nil {
		t.Fatalf("Open with kubelet_kubeconfig: %v", err)
	}
	d.Close()
	if !d.Capabilities().FileDiff {
		t.Error("the driver does not claim FileDiff with kubelet_ca")
	}
}

// webSocket are the headers of a WebSocket handshake for subprotocol, as kubectl (1.30
// and later) opens exec and attach with (execProtocol) and port-forward with
// (portForwardProtocol).
func webSocket(subprotocol string) http.Header {
	return http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"},
		"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}, "Sec-Websocket-Protocol": {subprotocol}}
}

const (
	execProtocol        = "v5.channel.k8s.io"
	portForwardProtocol = "SPDY/3.1+portforward.k8s.io"
)

// api sends requests to the cluster's API server over HTTP/1.1, which an upgrade
// needs.
type api struct {
	t      *testing.T
	server string
	client *http.Client
}

func newAPI(t *testing.T, c *kube.Cluster) *api {
	ca, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return &api{t: t, server: c.Server, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// do sends a request with no body and returns the answer's code and the start of its
// body; an upgraded connection is closed at once.
func (a *api) do(token, method, path string, headers ...http.Header) (int, string) {
	a.t.Helper()
	req, err := http.NewRequestWithContext(a.t.Context(), method, a.server+path, nil)
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for _, h := range headers {
		for k, vs := range h {
			for _, v := range vs {
				req.Header.Add(k, v)
			}
		}
	}
	resp, err := a.client.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp.StatusCode, ""
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b)
}

// auditSummary is one line per event of the audit log: stage, user, request, code.
func auditSummary(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var b strings.Builder
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev struct {
			AuditID, Stage, Verb, RequestURI string
			User                             struct{ Username string }
			ResponseStatus                   struct {
				Code    int
				Message string
			}
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			fmt.Fprintf(&b, "unparsed: %s\n", sc.Text())
			continue
		}
		fmt.Fprintf(&b, "%s %s %s %s %s: %d %s\n", ev.AuditID, ev.Stage, ev.User.Username, ev.Verb, ev.RequestURI, ev.ResponseStatus.Code, ev.ResponseStatus.Message)
	}
	return b.String()
}

// The line filter on testdata/audit.log, the audit log of a run of TestAuditLog (the
// requests it makes, in its order, each at two stages), and on lines edited from it
// for what that run cannot make.
func TestAuditLines(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 14 {
		t.Fatalf("testdata/audit.log has %d lines, want 14", len(lines))
	}
	impersonated := "exec by kiln-test-admin (as jane) through the API server: sh -c id"
	breakGlass := "exec by kiln-test-break-glass through the API server: id -u"
	attach := "attach by kiln-test-break-glass through the API server"
	want := []string{
		"", "", // an admin's exec, refused by the policy (the wait for it): 422
		"", "", // an admin's exec, refused by the policy: 422
		"", "", // a POST that does not upgrade: 400
		impersonated + " @ResponseStarted", impersonated + " @ResponseComplete", // 101
		breakGlass + " @ResponseStarted", breakGlass + " @ResponseComplete",
		attach + " @ResponseStarted", attach + " @ResponseComplete",
		"", "", // a port-forward the API server could not take to the kubelet: 500
	}
	for i, line := range lines {
		got := ""
		if detail, stage, ok := kubernetes.AuditDetail([]byte(line), namespace); ok {
			got = detail + " @" + stage
		}
		if got != want[i] {
			t.Errorf("line %d: %q, want %q", i+1, got, want[i])
		}
		if _, _, ok := kubernetes.AuditDetail([]byte(line), "other"); ok {
			t.Errorf("line %d is taken for a pod of namespace other", i+1)
		}
	}

	portForward := strings.Replace(lines[12], `"responseStatus":{"metadata":{},"status":"Failure","message":"error dialing backend: tls: failed to verify certificate: x509: cannot validate certificate for 10.0.0.1 because it doesn't contain any IP SANs","code":500}`,
		`"responseStatus":{"metadata":{},"code":101}`, 1)
	for _, c := range []struct{ name, line, want string }{
		{"a port-forward that reached the kubelet", portForward, "portforward by kiln-test-break-glass through the API server: port 8080"},
		{"a request refused by RBAC", strings.Replace(lines[8], `"code":101`, `"code":403`, 1), ""},
		{"a request refused by authentication", strings.Replace(lines[8], `"code":101`, `"code":401`, 1), ""},
		{"the stage RequestReceived", strings.Replace(lines[8], `"stage":"ResponseStarted"`, `"stage":"RequestReceived"`, 1), ""},
		{"the stage Panic", strings.Replace(lines[8], `"stage":"ResponseStarted"`, `"stage":"Panic"`, 1), ""},
		{"no response status", strings.Replace(lines[8], `"responseStatus":{"metadata":{},"code":101},`, "", 1), ""},
		{"a pod's log", strings.Replace(lines[8], `"subresource":"exec"`, `"subresource":"log"`, 1), ""},
		{"a service's proxy", strings.Replace(lines[8], `"resource":"pods"`, `"resource":"services"`, 1), ""},
		{"a cut line", lines[8][:len(lines[8])/2], ""},
		// Through the node's proxy, to the kubelet's own paths (a user allowed
		// nodes/proxy; no admission policy sees it).
		{"an exec through a node's proxy", nodeProxy(lines[8], "exec/kiln-test/web-r1-4x82t/server?command=id&command=-u"),
			"exec by kiln-test-break-glass through the proxy of node n1 (nodes/proxy, which no admission policy sees): id -u"},
		{"a run through a node's proxy", nodeProxy(lines[8], "run/kiln-test/web-r1-4x82t/server?cmd=id"),
			"exec by kiln-test-break-glass through the proxy of node n1 (nodes/proxy, which no admission policy sees): id"},
		{"a port-forward through a node's proxy", nodeProxy(lines[8], "portForward/kiln-test/web-r1-4x82t?ports=8080"),
			"portforward by kiln-test-break-glass through the proxy of node n1 (nodes/proxy, which no admission policy sees): port 8080"},
		{"an exec through a node's proxy into another namespace", nodeProxy(lines[8], "exec/other/web-r1-4x82t/server?command=id"), ""},
		{"a node's stats through its proxy", nodeProxy(lines[8], "stats/summary"), ""},
	} {
		got, _, _ := kubernetes.AuditDetail([]byte(c.line), namespace)
		if got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// nodeProxy is line, an exec into a pod, made a request through node n1's proxy to
// the kubelet's path (as kubectl get --raw /api/v1/nodes/n1/proxy/PATH would).
func nodeProxy(line, path string) string {
	var ev map[string]any
	json.Unmarshal([]byte(line), &ev)
	ev["requestURI"] = "/api/v1/nodes/n1/proxy/" + path
	ev["objectRef"] = map[string]any{"resource": "nodes", "name": "n1", "apiVersion": "v1", "subresource": "proxy"}
	b, _ := json.Marshal(ev)
	return string(b)
}

// A follower reads what is appended, whole lines only, through a rotation (renamed
// away, made anew) and a truncation, and waits for a file that is gone.
func TestFollow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	write := func(name, s string) {
		t.Helper()
		f, err := os.OpenFile(name, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	write(path, "history\n")
	next, stop := kubernetes.Follow(path, "")
	defer stop()
	step := func(what string, want ...string) {
		t.Helper()
		got, err := next()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", what, got, want)
		}
	}
	step("at first")
	write(path, "a\nb")
	step("a line and a half", "a")
	write(path, "\n"+strings.Repeat("x", kubernetes.MaxLine+1)+"\nc\n")
	step("the rest of the line, one too long to keep, and another", "b", "c")

	write(path, "d\n")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	write(path+".1", "e\n") // the writer had not reopened yet
	if got, err := next(); err == nil || !slices.Equal(got, []string{"d", "e"}) {
		t.Errorf("while the file is gone: %q, %v; want the rest of the old one and an error", got, err)
	}
	write(path+".1", "f\n")
	write(path, "g\n")
	step("after the rotation", "f", "g")

	write(path, "h\n")
	step("before a truncation", "h")
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	write(path, "i\n")
	step("after a truncation", "i")

	// A file that is not there yet is new once it is: read from its start.
	later := filepath.Join(t.TempDir(), "later.log")
	next, stop = kubernetes.Follow(later, "")
	defer stop()
	if _, err := next(); err == nil {
		t.Error("no error before the file exists")
	}
	write(later, "j\n")
	step("once the file exists", "j")
}

// A follower with a state file starts where the last one stopped: what was appended
// while none ran (kiln down) is read, a line half written then included; a state of
// another file, or past the end, is not used.
func TestFollowResumes(t *testing.T) {
	dir := t.TempDir()
	path, state := filepath.Join(dir, "audit.log"), filepath.Join(dir, "state.json")
	appendTo := func(s string) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(s)
		f.Close()
	}
	read := func(next func() ([]string, error), what string, want ...string) {
		t.Helper()
		got, err := next()
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: %q, %v; want %q", what, got, err, want)
		}
	}
	appendTo("history\n")
	next, stop := kubernetes.Follow(path, state)
	read(next, "the first follower, at first")
	appendTo("a\nb")
	read(next, "the first follower", "a")
	stop()

	appendTo("\nwhile down\n")
	next, stop = kubernetes.Follow(path, state)
	read(next, "the next follower", "b", "while down")
	stop()

	// Another file at the same path (rotated while kiln was down): from its end.
	os.Rename(path, path+".1")
	appendTo("in the new file before\n")
	next, stop = kubernetes.Follow(path, state)
	read(next, "a follower of another file, at first")
	appendTo("after\n")
	read(next, "a follower of another file", "after")
	stop()

	// Truncated below the saved offset: from the end.
	os.Truncate(path, 0)
	appendTo("x\n")
	next, stop = kubernetes.Follow(path, state)
	defer stop()
	read(next, "a follower of a truncated file")
}
