package kubernetes

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kiln-build/kiln/internal/driver"
)

// The API server's audit log is the one place a cluster shows who reached into a
// running container: exec, attach and port-forward are requests to the pod's
// subresources, proxied to the kubelet, and the pod object keeps no trace of them
// (unlike an ephemeral container, which Diff sees). With OptionAuditLog set, the
// watch follows the log and reports each of them into kiln's pods as EventExec.

// auditPoll is how often the audit log is read for what was appended.
const auditPoll = 250 * time.Millisecond

// reachSubresources are the pod subresources that reach into a running container; the
// name is the first word of the EventExec's detail.
var reachSubresources = []string{"exec", "attach", "portforward"}

// Stages of an audit event kiln reads. A long-running request (exec, attach and
// port-forward are) is logged when its answer starts and again when it ends, which may
// be hours later; any other once, complete.
const (
	stageStarted  = "ResponseStarted"
	stageComplete = "ResponseComplete"
)

// auditEvent is what kiln reads of one audit event (audit.k8s.io/v1 Event; the full
// type is k8s.io/apiserver's, which kiln does not depend on for so few fields).
type auditEvent struct {
	AuditID    string    `json:"auditID"`
	Stage      string    `json:"stage"`
	RequestURI string    `json:"requestURI"`
	User       auditUser `json:"user"`
	// ImpersonatedUser is whom the user acted as (kubectl --as); nil when no one.
	ImpersonatedUser *auditUser      `json:"impersonatedUser"`
	ObjectRef        *auditObjectRef `json:"objectRef"`
	ResponseStatus   *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	StageTimestamp time.Time `json:"stageTimestamp"`

	// What reachIn found: the pod reached into, the word for how (exec, attach,
	// portforward) and the way (the API server, a node's proxy).
	pod, word, via string
}

type auditUser struct {
	Username string `json:"username"`
}

type auditObjectRef struct {
	Resource    string `json:"resource"`
	Subresource string `json:"subresource"`
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
}

// reachIn parses one line of the audit log: ok when it is an exec, attach or
// port-forward into a pod of namespace that the API server let through to the pod's
// kubelet, at stage ResponseStarted or ResponseComplete: through the pod's subresource
// (pods/exec, which kiln's admission policy guards), or through the node's proxy
// (nodes/proxy to the kubelet's /exec, /run, /attach or /portForward, which no
// admission policy sees: a user who may proxy to nodes may exec into any pod).
//
// Let through is any answer but an error. The API server upgrades the client's
// connection (101) before it echoes what the kubelet answered, or, for a WebSocket
// exec or attach, before it even dials the kubelet: so whatever reached the kubelet is
// logged with code 101 (200 if nothing at all was written), and the log cannot tell
// whether a process then started. A code of 400 and above is the API server's own
// refusal, before the kubelet: 401 from authentication, 403 from authorization or a
// webhook, 422 from a ValidatingAdmissionPolicy (kiln's own), 400 for a request that
// does not upgrade or names no container of the pod, 404 for no such pod, 5xx for a
// kubelet it could not reach.
func reachIn(line []byte, namespace string) (auditEvent, bool) {
	// Most of a busy log is other requests: skip them before decoding.
	if !slices.ContainsFunc(prefilter, func(s string) bool { return bytes.Contains(line, []byte(s)) }) {
		return auditEvent{}, false
	}
	var ev auditEvent
	if json.Unmarshal(line, &ev) != nil {
		return auditEvent{}, false
	}
	ref := ev.ObjectRef
	if ev.Stage != stageStarted && ev.Stage != stageComplete || ref == nil || ev.ResponseStatus == nil || ev.ResponseStatus.Code >= 400 {
		return auditEvent{}, false
	}
	switch {
	case ref.Resource == "pods" && slices.Contains(reachSubresources, ref.Subresource):
		if ref.Namespace != namespace || ref.Name == "" {
			return auditEvent{}, false
		}
		ev.pod, ev.word, ev.via = ref.Name, ref.Subresource, "the API server"
		return ev, true
	case ref.Resource == "nodes" && ref.Subresource == "proxy":
		u, err := url.Parse(ev.RequestURI)
		if err != nil {
			return auditEvent{}, false
		}
		// /api/v1/nodes/NODE/proxy/VERB/NAMESPACE/POD[/CONTAINER]
		_, rest, ok := strings.Cut(u.Path, "/proxy/")
		parts := strings.Split(rest, "/")
		word := kubeletVerbs[parts[0]]
		if !ok || word == "" || len(parts) < 3 || parts[1] != namespace || parts[2] == "" {
			return auditEvent{}, false
		}
		ev.pod, ev.word, ev.via = parts[2], word, "the proxy of node "+ref.Name+" (nodes/proxy, which no admission policy sees)"
		return ev, true
	}
	return auditEvent{}, false
}

// kubeletVerbs are the kubelet's paths that reach into a container, by the word an
// EventExec's detail starts with.
var kubeletVerbs = map[string]string{"exec": "exec", "run": "exec", "attach": "attach", "portForward": "portforward"}

// prefilter are the words a line must hold to be decoded at all.
var prefilter = []string{"exec", "attach", "portforward", "portForward", "/run/"}

// detail is the EventExec's detail of ev: "exec by USER (as USER) through the API
// server: COMMAND", starting with the word for what reached in ("attach",
// "portforward").
func (ev auditEvent) detail() string {
	var b strings.Builder
	b.WriteString(ev.word + " by " + ev.User.Username)
	if u := ev.ImpersonatedUser; u != nil && u.Username != "" {
		b.WriteString(" (as " + u.Username + ")")
	}
	b.WriteString(" through " + ev.via)
	var q url.Values
	if u, err := url.Parse(ev.RequestURI); err == nil {
		q = u.Query()
	}
	switch ev.word {
	case "exec":
		cmd := strings.Join(q["command"], " ")
		if cmd == "" {
			cmd = strings.Join(q["cmd"], " ") // the kubelet's /run
		}
		if cmd != "" {
			b.WriteString(": " + cmd)
		}
	case "portforward":
		if ports := strings.Join(q["ports"], ","); ports != "" {
			b.WriteString(": port " + ports)
		}
	}
	return b.String()
}

// key is what makes one request's events the same: the audit ID alone is not, since
// a client may give it (the Audit-ID header), and reuse it.
func (ev auditEvent) key() string {
	return strings.Join([]string{ev.AuditID, ev.pod, ev.User.Username, ev.RequestURI}, "\x00")
}

// checkAuditLog is nil when path can be read.
func checkAuditLog(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("driver option %s: the API server's audit log %s cannot be read (%w): give kiln read access to the file "+
			"kube-apiserver's --audit-log-path names (JSON lines, --audit-log-format=json), or unset %s", OptionAuditLog, path, err, OptionAuditLog)
	}
	return f.Close()
}

// seenTTL is how long a request reported at ResponseStarted is kept for its
// ResponseComplete, which then is not reported again: a session longer than that is
// reported twice.
const seenTTL = 24 * time.Hour

// followAudit reports the exec, attach and port-forward into the project's pods that
// t's lines record (from where the last run stopped, when t has a state file), as
// EventExec at the time the API server logged them, until stop is closed; then it
// closes t. A log it cannot read is tried again at every poll.
func (d *Driver) followAudit(t *follower, stop <-chan struct{}) {
	defer t.close()
	tick := time.NewTicker(auditPoll)
	defer tick.Stop()
	seen := map[string]time.Time{} // requests (key) reported at ResponseStarted
	failing, saveFailing := false, false
	for {
		lines, err := t.next()
		switch {
		case err != nil && !failing:
			d.log.Warn("reading the API server's audit log: exec into kiln's pods is not seen until it can be read again",
				"path", t.path, "error", err)
		case err == nil && failing:
			d.log.Info("reading the API server's audit log again", "path", t.path)
		}
		failing = err != nil
		if t.skipped > 0 {
			d.log.Warn("lines of the API server's audit log too long to read were skipped: an exec they record is not seen",
				"path", t.path, "lines", t.skipped, "longest read", maxLine)
			t.skipped = 0
		}
		for _, line := range lines {
			if ev, ok := reachIn(line, d.namespace); ok {
				d.audited(ev, seen)
			}
		}
		// Saved once what was read is reported: a kiln stopped between the two reads
		// the lines again when it starts, reporting them twice rather than never.
		err = t.save()
		if err != nil && !saveFailing {
			d.log.Warn("an exec logged while kiln is down may not be seen when it starts again", "error", err)
		}
		saveFailing = err != nil
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// audited publishes ev unless its request was reported already (at ResponseStarted:
// the same audit ID, pod, user and request) or its pod is not one of kiln's in the
// project.
func (d *Driver) audited(ev auditEvent, seen map[string]time.Time) {
	key := ev.key()
	if _, ok := seen[key]; ok && ev.Stage == stageComplete {
		delete(seen, key)
		return
	}
	p := d.auditedPod(ev.pod)
	if p == nil {
		return
	}
	if ev.Stage == stageStarted {
		if len(seen) > 1024 {
			for id, at := range seen {
				if time.Since(at) > seenTTL {
					delete(seen, id)
				}
			}
		}
		seen[key] = time.Now()
	}
	s := serverOf(p)
	d.send(driver.Event{Type: driver.EventExec, ServerID: s.ID, Project: s.Project, Service: s.Service,
		Detail: ev.detail(), Time: ev.StageTimestamp})
}

// auditedPod is pod name if it is one of kiln's in the project, nil if it is not or
// is gone: from the informer's cache once it has listed the pods, else from the API
// server.
func (d *Driver) auditedPod(name string) *corev1.Pod {
	p, synced := d.fromCache(name)
	if !synced {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		if p, err = d.cs.CoreV1().Pods(d.namespace).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return nil
		}
	}
	if p == nil || p.Labels[LabelManagedBy] != managedBy || (d.project != "" && p.Labels[LabelProject] != labelValue(d.project)) {
		return nil
	}
	return p
}
