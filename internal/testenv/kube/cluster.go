package kube

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv/proc"
)

// Cluster is a running control plane with kwok.
type Cluster struct {
	// Server is the API server's URL (https://127.0.0.1:port); Token an admin's bearer
	// token (group system:masters); CAFile the PEM file that verifies the server.
	Server, Token, CAFile string
	// BreakGlassToken is the token of another admin, also in group BreakGlassGroup.
	BreakGlassToken string
	// Kubeconfig is a kubeconfig file for that server and token (context "kiln-test").
	Kubeconfig string
	// AuditLog is the API server's audit log (JSON lines): the exec, attach and
	// port-forward requests to pods and the requests to nodes' proxies, at the Metadata
	// level, once answered.
	AuditLog string
	// KubeletCA is the CA (PEM) of the real node's kubelet serving certificate;
	// StatsKubeconfig a kubeconfig whose user may only get nodes/stats (a kubelet's
	// summary).
	KubeletCA, StatsKubeconfig string

	dir        string
	nodeToken  string // the real node's kubelet (user system:node:NodeName)
	proxyToken string // its kube-proxy (user system:kube-proxy)
	statsToken string // user kiln-test-stats, who may get nodes/stats

	client   *http.Client
	procs    []*proc.Proc
	nodes    int
	stopOnce sync.Once
}

// startTimeout bounds how long Start waits for each component.
const startTimeout = time.Minute

// RequiredEnv, set to "1" (scripts/test sets it once the binaries are built), makes
// missing binaries fail a test instead of skipping it.
const RequiredEnv = "KILN_TEST_KUBE"

// Start starts the control plane and kwok on free loopback ports, in a temporary
// directory of t; t.Cleanup stops them (and logs their output if t failed). Under
// -short, or when the binaries are not built (and RequiredEnv is not set), it skips t.
func Start(t testing.TB) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("kube: not starting a Kubernetes control plane under -short")
	}
	bin, err := Binaries()
	if errors.Is(err, ErrNotBuilt) && os.Getenv(RequiredEnv) != "1" {
		t.Skipf("kube: %v", err)
	}
	if err != nil {
		t.Fatalf("kube: %v", err)
	}
	c, err := start(bin, t.TempDir())
	if c != nil {
		t.Cleanup(func() {
			c.Stop()
			if t.Failed() {
				for _, p := range c.procs {
					t.Logf("%s's output (last 64 KiB):\n%s", p.Name, p.Output())
				}
			}
		})
	}
	if err != nil {
		t.Fatalf("kube: %v", err)
	}
	return c
}

// Run is Start outside a test (a benchmark): it starts the control plane and kwok in
// dir, which it does not remove. The caller stops them (Stop), also after an error.
// ErrNotBuilt when the binaries are not built.
func Run(dir string) (*Cluster, error) {
	bin, err := Binaries()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c, err := start(bin, dir)
	if err != nil && c != nil {
		c.Stop()
	}
	return c, err
}

// Output is what each process of the cluster printed last (64 KiB each), by name.
func (c *Cluster) Output() map[string]string {
	out := map[string]string{}
	for _, p := range c.procs {
		out[p.Name] = p.Output()
	}
	return out
}

// start starts the cluster in dir. The cluster it returns, even with an error, holds
// the processes it started, for the caller to stop.
func start(bin, dir string) (*Cluster, error) {
	ports, err := proc.FreePorts(4)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort, kwokPort := ports[0], ports[1], ports[2], ports[3]
	c := &Cluster{
		Server: "https://" + proc.Addr(apiPort),
		Token:  token(), BreakGlassToken: token(), nodeToken: token(), proxyToken: token(), statsToken: token(),
		CAFile:   filepath.Join(dir, "certs", "apiserver.crt"),
		AuditLog: filepath.Join(dir, "audit.log"), KubeletCA: filepath.Join(dir, "pki", "ca.crt"),
		dir: dir,
	}
	if err := writeFiles(dir, c); err != nil {
		return c, err
	}
	env := proc.EnvWithout("KUBECONFIG=")
	run := func(name string, args ...string) (*proc.Proc, error) {
		p, err := proc.Start(name, filepath.Join(bin, name), env, args...)
		if err == nil {
			c.procs = append(c.procs, p)
		}
		return p, err
	}

	etcdURL := "http://" + proc.Addr(etcdClient)
	peerURL := "http://" + proc.Addr(etcdPeer)
	etcd, err := run("etcd", "--name=kiln-test", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kiln-test="+peerURL, "--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		return c, err
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	if err := proc.WaitFor(etcd, startTimeout, func() error {
		b, err := get(plain, etcdURL+"/health", "")
		if err == nil && !bytes.Contains(b, []byte(`"health":"true"`)) {
			err = fmt.Errorf("etcd says %s", b)
		}
		return err
	}); err != nil {
		return c, err
	}

	api, err := run("kube-apiserver", "--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(apiPort), "--cert-dir="+filepath.Join(dir, "certs"),
		"--service-account-issuer=https://kubernetes.default.svc", "--service-account-key-file="+filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"), "--service-cluster-ip-range=10.96.0.0/16",
		"--token-auth-file="+filepath.Join(dir, "tokens.csv"), "--authorization-mode=Node,RBAC",
		"--audit-policy-file="+filepath.Join(dir, "audit-policy.yaml"), "--audit-log-path="+c.AuditLog,
		"--audit-log-format=json", "--audit-log-mode=blocking",
		// The real node's kubelet (StartNode) trusts the client certificate, and the
		// API server its serving one, from the cluster's own CA.
		"--kubelet-client-certificate="+filepath.Join(dir, "pki", "apiserver-kubelet-client.crt"),
		"--kubelet-client-key="+filepath.Join(dir, "pki", "apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority="+filepath.Join(dir, "pki", "ca.crt"),
		"--kubelet-preferred-address-types=InternalIP") // the node's name is in no DNS
	if err != nil {
		return c, err
	}
	// The API server writes its self-signed certificate on start: trusted once there.
	if err := proc.WaitFor(api, startTimeout, func() error {
		if c.client == nil {
			pemBytes, err := os.ReadFile(c.CAFile)
			if err != nil {
				return err
			}
			roots := x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pemBytes) {
				return fmt.Errorf("%s holds no certificate", c.CAFile)
			}
			c.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
		}
		_, err := get(c.client, c.Server+"/readyz", c.Token)
		return err
	}); err != nil {
		return c, err
	}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kubeconfigFor(c, "kiln-test-admin", c.Token), 0o600); err != nil {
		return c, err
	}
	c.StatsKubeconfig = filepath.Join(dir, "stats.kubeconfig")
	if err := os.WriteFile(c.StatsKubeconfig, kubeconfigFor(c, "kiln-test-stats", c.statsToken), 0o600); err != nil {
		return c, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	role := map[string]any{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
		"metadata": map[string]any{"name": "kiln-test-stats"},
		"rules":    []any{map[string]any{"apiGroups": []string{""}, "resources": []string{"nodes/stats"}, "verbs": []string{"get"}}}}
	binding := map[string]any{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
		"metadata": map[string]any{"name": "kiln-test-stats"},
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kiln-test-stats"},
		"subjects": []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kiln-test-stats"}}}
	if err := c.Do(ctx, http.MethodPost, "/apis/rbac.authorization.k8s.io/v1/clusterroles", role, nil); err != nil {
		return c, err
	}
	if err := c.Do(ctx, http.MethodPost, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding, nil); err != nil {
		return c, err
	}

	cm, err := run("kube-controller-manager", "--kubeconfig="+c.Kubeconfig, "--leader-elect=false", "--secure-port=0",
		"--service-account-private-key-file="+filepath.Join(dir, "sa.key"), "--root-ca-file="+c.CAFile,
		"--use-service-account-credentials=false", "--controllers=*,-nodeipam")
	if err != nil {
		return c, err
	}
	if _, err := run("kube-scheduler", "--kubeconfig="+c.Kubeconfig, "--leader-elect=false", "--secure-port=0"); err != nil {
		return c, err
	}
	kwokConf := filepath.Join(dir, "kwok.yaml")
	if err := writeKwokConfig(kwokConf, bin, proc.Addr(kwokPort)); err != nil {
		return c, err
	}
	if _, err := run("kwok", "--kubeconfig="+c.Kubeconfig, "--config="+kwokConf); err != nil {
		return c, err
	}
	// The controller manager makes the default service account, without which no pod
	// is admitted: the cluster is ready for a test once it exists.
	if err := proc.WaitFor(cm, startTimeout, func() error {
		if err := c.exited(); err != nil {
			return err
		}
		_, err := get(c.client, c.Server+"/api/v1/namespaces/default/serviceaccounts/default", c.Token)
		return err
	}); err != nil {
		return c, err
	}
	return c, nil
}

// BreakGlassGroup is the group of the cluster's BreakGlassToken.
const BreakGlassGroup = "kiln:break-glass"

// token is a new random bearer token.
func token() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// auditPolicy has the API server record the requests that start a process in a pod or
// reach into one (through the pod, or its node's proxy), as answered, and nothing else.
const auditPolicy = `{"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
 "rules": [{"level": "Metadata", "resources": [{"group": "", "resources": ["pods/exec", "pods/attach", "pods/portforward", "nodes/proxy"]}]},
           {"level": "None"}]}
`

// writeFiles writes c's token file, audit policy, service-account key pair and the
// certificates between the API server and a real node's kubelet.
func writeFiles(dir string, c *Cluster) error {
	tokens := c.Token + ",kiln-test-admin,1,system:masters\n" +
		c.BreakGlassToken + ",kiln-test-break-glass,2,\"system:masters," + BreakGlassGroup + "\"\n" +
		c.nodeToken + ",system:node:" + NodeName + ",3,system:nodes\n" +
		c.proxyToken + ",system:kube-proxy,4,\n" +
		c.statsToken + ",kiln-test-stats,5,\n"
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "audit-policy.yaml"), []byte(auditPolicy), 0o600); err != nil {
		return err
	}
	if err := writePKI(filepath.Join(dir, "pki")); err != nil {
		return err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	priv, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)
}

// FakeNode is the annotation of the nodes kwok runs.
const FakeNode = "kwok.x-k8s.io/node"

// writeKwokConfig writes kwok's configuration (the nodes annotated FakeNode=fake are
// its) followed by the stock fast stages: pods are Ready once scheduled.
func writeKwokConfig(file, bin, serverAddr string) error {
	var b bytes.Buffer
	conf, err := json.Marshal(map[string]any{
		"apiVersion": "config.kwok.x-k8s.io/v1alpha1", "kind": "KwokConfiguration",
		"options": map[string]any{
			"manageNodesWithAnnotationSelector": FakeNode + "=fake",
			"nodePlayStageParallelism":          4, "podPlayStageParallelism": 4,
			"nodeLeaseParallelism": 4, "nodeLeaseDurationSeconds": 40,
			"enablePodsOnNodeSyncStreamWatch": true,
			"serverAddress":                   serverAddr,
			"cidr":                            "10.244.0.0/16", "nodeIP": "10.0.0.1",
		},
	})
	if err != nil {
		return err
	}
	b.Write(conf)
	for _, s := range stages {
		st, err := os.ReadFile(filepath.Join(bin, stageDir, filepath.Base(s)))
		if err != nil {
			return err
		}
		b.WriteString("\n---\n")
		b.Write(st)
	}
	return os.WriteFile(file, b.Bytes(), 0o644)
}

// AddNodes adds n fake nodes (kwok-0, kwok-1, … after those added before) and waits
// until they are Ready.
func (c *Cluster) AddNodes(ctx context.Context, n int) error {
	var names []string
	for range n {
		name := fmt.Sprintf("kwok-%d", c.nodes)
		c.nodes++
		node := map[string]any{
			"apiVersion": "v1", "kind": "Node",
			"metadata": map[string]any{"name": name,
				"annotations": map[string]string{FakeNode: "fake", "node.alpha.kubernetes.io/ttl": "0"},
				"labels":      map[string]string{"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"}},
			"status": map[string]any{
				"allocatable": map[string]string{"cpu": "32", "memory": "256Gi", "pods": "110"},
				"capacity":    map[string]string{"cpu": "32", "memory": "256Gi", "pods": "110"},
			},
		}
		if err := c.Do(ctx, http.MethodPost, "/api/v1/nodes", node, nil); err != nil {
			return fmt.Errorf("adding node %s: %w", name, err)
		}
		names = append(names, name)
	}
	for _, name := range names {
		if err := c.Wait(ctx, "/api/v1/nodes/"+name, func(obj map[string]any) bool { return ConditionTrue(obj, "Ready") }); err != nil {
			return fmt.Errorf("node %s never Ready: %w", name, err)
		}
	}
	return nil
}

// Do sends a request to the API server with the admin's token: in (unless nil) as
// JSON, the answer decoded into out (unless nil). An answer outside 2xx is an error
// with the server's message.
func (c *Cluster) Do(ctx context.Context, method, path string, in, out any) error {
	return c.DoWith(ctx, c.Token, method, path, "application/json", in, out)
}

// DoWith is Do with another token and content type (a PATCH's, e.g.
// "application/strategic-merge-patch+json").
func (c *Cluster) DoWith(ctx context.Context, token, method, path, contentType string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Server+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", contentType)
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Wait polls path until done says so of the object, ctx ends, or a process of the
// cluster exits (the error then holds its output).
func (c *Cluster) Wait(ctx context.Context, path string, done func(map[string]any) bool) error {
	var last error
	for {
		if err := c.exited(); err != nil {
			return err
		}
		var obj map[string]any
		if last = c.Do(ctx, http.MethodGet, path, nil, &obj); last == nil && done(obj) {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// exited is an error with the output of a process of the cluster that has exited, nil
// while all run.
func (c *Cluster) exited() error {
	for _, p := range c.procs {
		if p.Exited() {
			return fmt.Errorf("%s exited:\n%s", p.Name, p.Output())
		}
	}
	return nil
}

// ConditionTrue reports whether the object's status has condition typ "True".
func ConditionTrue(obj map[string]any, typ string) bool {
	status, _ := obj["status"].(map[string]any)
	conds, _ := status["conditions"].([]any)
	for _, c := range conds {
		if m, _ := c.(map[string]any); m["type"] == typ {
			return m["status"] == "True"
		}
	}
	return false
}

// Stop stops kwok and the control plane, last started first, and waits for them;
// it is idempotent (t.Cleanup calls it too).
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		for i := len(c.procs) - 1; i >= 0; i-- {
			c.procs[i].Stop()
		}
	})
}

func get(c *http.Client, url, token string) ([]byte, error) {
	return proc.Get(context.Background(), c, url, token)
}
