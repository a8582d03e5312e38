package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"golang.org/x/sync/singleflight"

	"github.com/kiln-build/kiln/internal/driver"
)

// No API shows a file changed in a running pod, and the root of kiln's pods is
// read-only, so nothing in a pod can change one: only a hand on the node (root there,
// ctr or crictl, a volume of the node's) can. What shows it is the kubelet's summary
// of its pods (/stats/summary, the container's rootfs: the bytes and inodes of its
// writable layer, which the runtime measures every few seconds). With OptionKubeletCA
// set, Diff reads it from each node's kubelet (as metrics-server does: the kubelet's
// own port, as a user who needs nodes/stats and never nodes/proxy, which would allow
// exec; see newKubelets) and compares a pod's rootfs with what it was when kiln first
// measured it running, kept in the pod's AnnotationRootfs.

// AnnotationRootfs is a pod's rootfs as kiln first measured it: "BYTES/INODES".
const AnnotationRootfs = "kiln.dev/rootfs"

// statsTTL is how long a node's summary serves the diffs of its pods (the controller
// diffs every server at each resync; the runtime measures less often).
const statsTTL = 2 * time.Second

// rootfs is the size of a container's writable layer.
type rootfs struct{ Bytes, Inodes uint64 }

func (r rootfs) String() string { return fmt.Sprintf("%d/%d", r.Bytes, r.Inodes) }

func parseRootfs(s string) (rootfs, bool) {
	var r rootfs
	n, err := fmt.Sscanf(s, "%d/%d", &r.Bytes, &r.Inodes)
	return r, err == nil && n == 2
}

// settle is how long a pod's rootfs must measure the same before kiln takes it as the
// pod's own: the runtime measures every 10 s, and reports nothing (0) until it has, and
// the runtime's own mountpoints are written as the container starts.
const settle = 15 * time.Second

// kubelets reads the nodes' summaries, each for statsTTL.
type kubelets struct {
	client *http.Client // the kubelets' user, the kubelets' CA
	reads  singleflight.Group
	mu     sync.Mutex
	nodes  map[string]nodeStats
	// first is each pod's rootfs as first measured the same, not yet settled.
	first map[types.UID]measured
	// recorded are the pods whose rootfs kiln recorded, and when: one whose record is
	// gone was tampered with (once the informer has had the time to see the record).
	recorded map[types.UID]time.Time
}

type measured struct {
	rootfs
	since time.Time
}

type nodeStats struct {
	at   time.Time
	pods map[types.UID]rootfs // the server container's, by pod
	err  error
}

// newKubelets is the client of the kubelets, verifying their serving certificates
// with the CA in file caFile, as the user of kubeconfig file userFile; with none, as
// rc's user, if that user is a client certificate alone. A token (or a plugin that
// makes one) is not sent to the kubelets: a root user on a node holds its kubelet's
// serving key, could answer in its place, and would have kiln's token.
func newKubelets(rc *rest.Config, caFile, userFile string) (*kubelets, error) {
	var kc *rest.Config
	if userFile != "" {
		var err error
		if kc, err = restConfig(userFile, ""); err != nil {
			return nil, fmt.Errorf("driver option %s: %w", OptionKubeletKubeconfig, err)
		}
	} else {
		kc = rest.CopyConfig(rc)
		if kc.BearerToken != "" || kc.BearerTokenFile != "" || kc.ExecProvider != nil || kc.AuthProvider != nil || kc.Username != "" {
			return nil, fmt.Errorf("driver option %s: kiln would send its own token to every kubelet, and a root user on a node could take it: "+
				"set %s to a kubeconfig whose user may only get nodes/stats, or use a client certificate", OptionKubeletCA, OptionKubeletKubeconfig)
		}
	}
	kc.TLSClientConfig.CAFile, kc.TLSClientConfig.CAData, kc.TLSClientConfig.ServerName = caFile, nil, ""
	kc.TLSClientConfig.Insecure = false
	kc.Timeout = 5 * time.Second
	c, err := rest.HTTPClientFor(kc)
	if err != nil {
		return nil, fmt.Errorf("driver option %s: %w", OptionKubeletCA, err)
	}
	// A kubelet's redirect is not followed: the credentials would go with it.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &kubelets{client: c, nodes: map[string]nodeStats{}, first: map[types.UID]measured{}, recorded: map[types.UID]time.Time{}}, nil
}

// summary is the node's summary: its pods' server containers' rootfs, by pod UID,
// read at most once per statsTTL (concurrent callers share a read). A failed read is
// logged.
func (d *Driver) summary(ctx context.Context, nodeName string) (map[types.UID]rootfs, error) {
	k := d.kubelets
	k.mu.Lock()
	s, ok := k.nodes[nodeName]
	k.mu.Unlock()
	if ok && time.Since(s.at) < statsTTL {
		return s.pods, s.err
	}
	v, _, _ := k.reads.Do(nodeName, func() (any, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		pods, err := d.readSummary(rctx, nodeName)
		if err != nil {
			d.log.Warn("reading a node's summary: files changed in its pods are not seen", "node", nodeName, "error", err)
		}
		s := nodeStats{at: time.Now(), pods: pods, err: err}
		k.mu.Lock()
		k.nodes[nodeName] = s
		if len(k.nodes) > 4096 { // nodes gone
			for n, s := range k.nodes {
				if time.Since(s.at) > time.Hour {
					delete(k.nodes, n)
				}
			}
		}
		k.mu.Unlock()
		return s, nil
	})
	s = v.(nodeStats)
	return s.pods, s.err
}

func (d *Driver) readSummary(ctx context.Context, nodeName string) (map[types.UID]rootfs, error) {
	node, err := d.cs.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", nodeName, d.check(err))
	}
	var addr string
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			addr = a.Address
			break
		}
	}
	port := node.Status.DaemonEndpoints.KubeletEndpoint.Port
	if addr == "" || port == 0 {
		return nil, fmt.Errorf("node %s reports no internal IP or kubelet port", nodeName)
	}
	url := "https://" + net.JoinHostPort(addr, strconv.Itoa(int(port))) + "/stats/summary"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.kubelets.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the kubelet of node %s: %w", nodeName, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the kubelet of node %s answered %s to %s (the kubelets' user needs nodes/stats)", nodeName, resp.Status, url)
	}
	var sum struct {
		Pods []struct {
			PodRef struct {
				Namespace string    `json:"namespace"`
				UID       types.UID `json:"uid"`
			} `json:"podRef"`
			Containers []struct {
				Name   string `json:"name"`
				Rootfs *struct {
					UsedBytes  *uint64 `json:"usedBytes"`
					InodesUsed *uint64 `json:"inodesUsed"`
				} `json:"rootfs"`
			} `json:"containers"`
		} `json:"pods"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&sum); err != nil {
		return nil, fmt.Errorf("the summary of node %s: %w", nodeName, err)
	}
	out := map[types.UID]rootfs{}
	for _, p := range sum.Pods {
		if p.PodRef.Namespace != d.namespace {
			continue
		}
		for _, c := range p.Containers {
			if c.Name == container && c.Rootfs != nil && c.Rootfs.UsedBytes != nil && c.Rootfs.InodesUsed != nil {
				out[p.PodRef.UID] = rootfs{Bytes: *c.Rootfs.UsedBytes, Inodes: *c.Rootfs.InodesUsed}
			}
		}
	}
	return out, nil
}

// fileDrift is pod p's file drift: its rootfs grown or shrunk since kiln first
// measured it (the same for settle, the pod ready), which it records in the pod when
// it has not yet; the record removed is drift too. A node whose kubelet cannot be read
// is no drift (summary logs it); nor is a rootfs not measured yet (no entry, or 0).
func (d *Driver) fileDrift(ctx context.Context, p *corev1.Pod) []driver.Drift {
	if d.kubelets == nil || p.Spec.NodeName == "" || !running(p) || p.DeletionTimestamp != nil {
		return nil
	}
	base, recorded := parseRootfs(p.Annotations[AnnotationRootfs])
	if !recorded && d.wasRecorded(p.UID) {
		return []driver.Drift{{Kind: driver.DriftFile, Detail: "the record of the container's writable layer (annotation " + AnnotationRootfs +
			") was removed: what it holds now cannot be told from what it held"}}
	}
	pods, err := d.summary(ctx, p.Spec.NodeName)
	if err != nil {
		return nil
	}
	now, ok := pods[p.UID]
	if !ok || now == (rootfs{}) {
		return nil // not measured yet
	}
	if !recorded {
		if d.settled(p, now) {
			patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationRootfs: now.String()}}})
			if _, err := d.cs.CoreV1().Pods(d.namespace).Patch(ctx, p.Name, types.MergePatchType, patch,
				metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
				d.log.Warn("recording a pod's rootfs", "pod", p.Name, "error", d.check(err))
			} else {
				d.kubelets.mu.Lock()
				d.kubelets.recorded[p.UID] = time.Now()
				d.kubelets.mu.Unlock()
			}
		}
		return nil
	}
	d.kubelets.mu.Lock()
	if _, ok := d.kubelets.recorded[p.UID]; !ok { // recorded before this process
		d.kubelets.recorded[p.UID] = time.Now()
	}
	d.kubelets.mu.Unlock()
	if now == base {
		return nil
	}
	return []driver.Drift{{Kind: driver.DriftFile, Detail: fmt.Sprintf(
		"the container's writable layer changed on node %s: %d bytes in %d inodes, was %d in %d (a file written or removed outside the writable paths, by a hand on the node: the root is read-only in the pod)",
		p.Spec.NodeName, now.Bytes, now.Inodes, base.Bytes, base.Inodes)}}
}

// settled reports whether the ready pod p's rootfs has measured now for settle; a
// different measure starts the wait again.
func (d *Driver) settled(p *corev1.Pod, now rootfs) bool {
	k := d.kubelets
	k.mu.Lock()
	defer k.mu.Unlock()
	m, ok := k.first[p.UID]
	if !ok || m.rootfs != now || notReady(p) != nil {
		if len(k.first) > 4096 { // pods gone before they settled
			for uid, m := range k.first {
				if time.Since(m.since) > 10*settle {
					delete(k.first, uid)
				}
			}
		}
		k.first[p.UID] = measured{now, time.Now()}
		return false
	}
	if time.Since(m.since) < settle {
		return false
	}
	delete(k.first, p.UID)
	return true
}

// wasRecorded reports whether kiln recorded the pod's rootfs, or saw it recorded, a
// while ago (10 s: the pod Diff reads may be the informer's, a moment old).
func (d *Driver) wasRecorded(uid types.UID) bool {
	d.kubelets.mu.Lock()
	defer d.kubelets.mu.Unlock()
	at, ok := d.kubelets.recorded[uid]
	return ok && time.Since(at) > 10*time.Second
}

// forget drops what k keeps of a pod that is gone; a nil k keeps nothing.
func (k *kubelets) forget(uid types.UID) {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.first, uid)
	delete(k.recorded, uid)
}
