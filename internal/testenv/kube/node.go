package kube

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kiln-build/kiln/internal/testenv/proc"
)

// The real node: one per machine (StartNode holds a lock for its life), its pods on a
// bridge of their own.
const (
	NodeName    = "kiln-real-node"
	NodeIP      = "10.222.0.1" // the bridge's address: the node's, and its pods' gateway
	PodCIDR     = "10.222.0.0/24"
	ServiceCIDR = "10.96.0.0/16" // the cluster's Service addresses, which kube-proxy carries

	bridge     = "kiln-cni0"
	cniNetwork = "kiln-test"
	// nodeDir holds all the node's state, its pods' network namespaces too: a fixed
	// place, so that what a killed test left (processes, mounts) is found and removed by
	// the next one.
	nodeDir    = "/run/kiln-test-node"
	cgroupRoot = "/kiln-test-node"
	lockFile   = "/run/kiln-test-node.lock"
)

// Node is a real node of a Cluster on this machine: a kubelet on a containerd of its
// own (Debian's, with Debian's CNI plugins and runc), pulling images from a registry on
// loopback, and kube-proxy carrying Services' addresses to its pods, for this machine's
// processes to reach.
type Node struct {
	procs    []*proc.Proc
	lock     *os.File
	bin      string
	sysctls  map[string][]byte // kubeletSysctls' values before the kubelet started
	stopOnce sync.Once
}

// kubeletSysctls are the kernel settings (paths under /proc/sys) the kubelet sets as it
// starts (setupKernelTunables in k8s.io/kubernetes pkg/kubelet/cm); Stop puts back what
// they were.
var kubeletSysctls = []string{
	"kernel/panic_on_oops", "kernel/panic", "vm/overcommit_memory", "vm/panic_on_oom",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// NodePrerequisites says what this machine lacks to run a real node, nil when it has it
// all: root, containerd, runc, iptables, ip and the CNI plugins (scripts/ensure-kube-node
// installs them); cgroup v1 hierarchies; and no kubelet or kube-proxy but the harness's,
// whose iptables rules the node's would take over and its cleanup remove.
func NodePrerequisites() error {
	if os.Geteuid() != 0 {
		return errors.New("a real node needs root")
	}
	var missing []string
	for _, p := range []string{"containerd", "runc", "iptables", "ip"} {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniBin, p)); err != nil {
			missing = append(missing, "CNI plugin "+p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("a real node needs %s: run scripts/ensure-kube-node", strings.Join(missing, ", "))
	}
	if fi, err := os.Stat("/sys/fs/cgroup/pids"); err != nil || !fi.IsDir() {
		return errors.New("a real node needs cgroup v1 (hybrid) hierarchies, in which this harness makes its cgroups: /sys/fs/cgroup/pids is none")
	}
	for _, p := range nodeProcesses("kubelet", "kube-proxy") {
		if !p.own {
			return fmt.Errorf("another %s (pid %d) runs on this machine: the real node would take its iptables rules", p.program, p.pid)
		}
	}
	return nil
}

const cniBin = "/usr/lib/cni"

// StartNode starts a real node (NodeName) for c, its sandbox image pushed to registry
// (host:port on loopback, plain HTTP), from which it pulls every image; t.Cleanup stops
// it, removes what it made (processes, mounts, the bridge, kube-proxy's rules, nodeDir)
// and puts back the kernel settings its kubelet changed (see cleanNode for what stays). It
// waits for another test's node on this machine to stop first. It skips t when the
// machine lacks what a node needs (NodePrerequisites), unless RequiredEnv is set.
func (c *Cluster) StartNode(t testing.TB, registry string) *Node {
	t.Helper()
	if err := NodePrerequisites(); err != nil {
		if os.Getenv(RequiredEnv) != "1" {
			t.Skipf("kube: %v", err)
		}
		t.Fatalf("kube: %v", err)
	}
	bin, err := Binaries()
	if err != nil {
		t.Fatalf("kube: %v", err)
	}
	n := &Node{bin: bin}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range n.procs {
				t.Logf("%s's output (last 64 KiB):\n%s", p.Name, p.Output())
			}
		}
		n.Stop()
	})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := n.start(ctx, c, registry); err != nil {
		t.Fatalf("kube: the real node: %v", err)
	}
	return n
}

func (n *Node) start(ctx context.Context, c *Cluster, registry string) error {
	lock, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		return fmt.Errorf("waiting for the machine's other real node: %w", err)
	}
	n.lock = lock
	cleanNode(n.bin) // what a test killed before its cleanup left
	if err := os.MkdirAll(nodeDir, 0o700); err != nil {
		return err
	}
	pause := registry + "/kiln-test/pause:1"
	if err := pushPause(ctx, filepath.Join(n.bin, "pause"), pause); err != nil {
		return fmt.Errorf("pushing the sandbox image: %w", err)
	}
	if err := network(); err != nil {
		return err
	}
	if err := cgroups(); err != nil {
		return err
	}
	sock := filepath.Join(nodeDir, "containerd.sock")
	if err := writeContainerd(registry, pause, sock); err != nil {
		return err
	}
	run := func(name, bin string, args ...string) (*proc.Proc, error) {
		p, err := proc.Start(name, bin, proc.EnvWithout("KUBECONFIG="), args...)
		if err == nil {
			n.procs = append(n.procs, p)
		}
		return p, err
	}
	containerd, err := run("containerd", "containerd", "--config="+filepath.Join(nodeDir, "containerd.toml"))
	if err != nil {
		return err
	}
	if err := proc.WaitFor(containerd, startTimeout, func() error {
		conn, err := net.Dial("unix", sock)
		if err == nil {
			conn.Close()
		}
		return err
	}); err != nil {
		return err
	}

	ports, err := proc.FreePorts(3)
	if err != nil {
		return err
	}
	kubeletConf, err := writeKubelet(c, sock, ports[0])
	if err != nil {
		return err
	}
	n.sysctls = map[string][]byte{}
	for _, s := range kubeletSysctls {
		if b, err := os.ReadFile(filepath.Join("/proc/sys", s)); err == nil {
			n.sysctls[s] = b
		}
	}
	kubelet, err := run("kubelet", filepath.Join(n.bin, "kubelet"), "--config="+kubeletConf,
		"--kubeconfig="+filepath.Join(nodeDir, "kubelet.kubeconfig"), "--root-dir="+filepath.Join(nodeDir, "kubelet"),
		"--hostname-override="+NodeName, "--node-ip="+NodeIP, "--v=1")
	if err != nil {
		return err
	}
	if err := proc.WaitFor(kubelet, startTimeout, func() error {
		var node map[string]any
		if err := c.Do(ctx, http.MethodGet, "/api/v1/nodes/"+NodeName, nil, &node); err != nil {
			return err
		}
		if !ConditionTrue(node, "Ready") {
			return errors.New("the node is not Ready")
		}
		return nil
	}); err != nil {
		return err
	}

	proxyConf := filepath.Join(nodeDir, "kube-proxy.kubeconfig")
	if err := os.WriteFile(proxyConf, kubeconfigFor(c, "system:kube-proxy", c.proxyToken), 0o600); err != nil {
		return err
	}
	healthz := proc.Addr(ports[2])
	proxy, err := run("kube-proxy", filepath.Join(n.bin, "kube-proxy"), "--kubeconfig="+proxyConf,
		"--hostname-override="+NodeName, "--proxy-mode=iptables", "--cluster-cidr="+PodCIDR,
		"--nodeport-addresses="+NodeIP+"/32",
		// 0: the machine's conntrack settings stay as they are.
		"--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
		"--metrics-bind-address="+proc.Addr(ports[1]), "--healthz-bind-address="+healthz)
	if err != nil {
		return err
	}
	// kube-proxy is healthy once it has written the rules of what it has read.
	return proc.WaitFor(proxy, startTimeout, func() error {
		_, err := proc.Get(ctx, &http.Client{Timeout: time.Second}, "http://"+healthz+"/healthz", "")
		return err
	})
}

// Stop stops kube-proxy, the kubelet and containerd, removes what they made (cleanNode)
// and puts back the kernel settings the kubelet changed, each step best effort; it is
// idempotent.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		for i := len(n.procs) - 1; i >= 0; i-- {
			n.procs[i].Stop()
		}
		cleanNode(n.bin)
		for s, b := range n.sysctls {
			os.WriteFile(filepath.Join("/proc/sys", s), b, 0o644)
		}
		if n.lock != nil {
			n.lock.Close()
		}
	})
}

// pushPause pushes an image of the pause program alone, as ref.
func pushPause(ctx context.Context, program, ref string) error {
	b, err := os.ReadFile(program)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "pause", Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg})
	tw.Write(b)
	tw.Close()
	layer, err := tarball.LayerFromReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config = v1.Config{Entrypoint: []string{"/pause"}, User: "65535"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(r, img, remote.WithContext(ctx))
}

// network makes the node's bridge with its address, and routes the Service addresses
// there (kube-proxy rewrites them to a pod's before they leave).
func network() error {
	for _, args := range [][]string{
		{"link", "add", bridge, "type", "bridge"},
		{"addr", "add", NodeIP + "/24", "dev", bridge},
		{"link", "set", bridge, "up"},
		{"route", "add", ServiceCIDR, "dev", bridge, "src", NodeIP},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// cgroups makes the node's cgroup (the kubelet's cgroupRoot) in each hierarchy, its
// cpuset given the machine's CPUs and memory nodes.
func cgroups() error {
	hier, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return err
	}
	for _, h := range hier {
		dir := filepath.Join("/sys/fs/cgroup", h.Name(), cgroupRoot)
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			continue // not a hierarchy one can make cgroups in
		}
		if h.Name() == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpuset", f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// runcWrapper runs runc with the oom_score_adj a container asks for raised to 0: a
// process of this machine may not lower its score (it lacks CAP_SYS_RESOURCE), and the
// kubelet asks for -998 for a sandbox and -997 for a Guaranteed pod's containers.
const runcWrapper = `#!/bin/sh
prev=
for a in "$@"; do
  if [ "$prev" = "--bundle" ] || [ "$prev" = "-b" ]; then
    sed -i -E 's/"oomScoreAdj":-[0-9]+/"oomScoreAdj":0/' "$a/config.json"
  fi
  prev=$a
done
exec %s "$@"
`

// writeContainerd writes containerd's configuration (all its state in nodeDir, the pods'
// network namespaces too, the CRI plugin's sandbox image pause, CNI with a bridge
// network on PodCIDR, images from registry over plain HTTP) and what it refers to.
func writeContainerd(registry, pause, sock string) error {
	runc, err := exec.LookPath("runc")
	if err != nil {
		return err
	}
	wrapper := filepath.Join(nodeDir, "runc")
	if err := os.WriteFile(wrapper, fmt.Appendf(nil, runcWrapper, runc), 0o755); err != nil {
		return err
	}
	cni := filepath.Join(nodeDir, "cni")
	hosts := filepath.Join(nodeDir, "certs.d", registry)
	for _, d := range []string{cni, hosts} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	conflist, _ := json.Marshal(map[string]any{
		"cniVersion": "0.4.0", "name": cniNetwork,
		"plugins": []any{map[string]any{
			"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false, "hairpinMode": true,
			"ipam": map[string]any{"type": "host-local", "ranges": [][]map[string]string{{{"subnet": PodCIDR, "gateway": NodeIP}}},
				"routes": []map[string]string{{"dst": "0.0.0.0/0"}}},
		}},
	})
	if err := os.WriteFile(filepath.Join(cni, "10-kiln-test.conflist"), conflist, 0o644); err != nil {
		return err
	}
	hostsToml := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+registry, "http://"+registry)
	if err := os.WriteFile(filepath.Join(hosts, "hosts.toml"), []byte(hostsToml), 0o644); err != nil {
		return err
	}
	conf := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = %[3]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[4]q
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = %[5]q
        Root = %[9]q
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[6]q
    conf_dir = %[7]q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %[8]q
`, filepath.Join(nodeDir, "root"), filepath.Join(nodeDir, "state"), sock, pause, wrapper, cniBin, cni, filepath.Join(nodeDir, "certs.d"), filepath.Join(nodeDir, "runc-state"))
	return os.WriteFile(filepath.Join(nodeDir, "containerd.toml"), []byte(conf), 0o644)
}

// writeKubelet writes the kubelet's kubeconfig and configuration (serving on NodeIP:port
// with the cluster's certificates, its requests authenticated and authorized by the API
// server, its pods in cgroupRoot and logs in nodeDir) and returns the configuration's
// path.
func writeKubelet(c *Cluster, sock string, port int) (string, error) {
	if err := os.WriteFile(filepath.Join(nodeDir, "kubelet.kubeconfig"), kubeconfigFor(c, "system:node:"+NodeName, c.nodeToken), 0o600); err != nil {
		return "", err
	}
	pki := filepath.Join(c.dir, "pki")
	conf, _ := json.Marshal(map[string]any{
		"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
		"address": NodeIP, "port": port, "readOnlyPort": 0, "healthzPort": 0,
		"tlsCertFile": filepath.Join(pki, "kubelet.crt"), "tlsPrivateKeyFile": filepath.Join(pki, "kubelet.key"),
		"authentication": map[string]any{"anonymous": map[string]any{"enabled": false}, "webhook": map[string]any{"enabled": true},
			"x509": map[string]any{"clientCAFile": filepath.Join(pki, "ca.crt")}},
		"authorization":            map[string]any{"mode": "Webhook"},
		"containerRuntimeEndpoint": "unix://" + sock,
		"cgroupDriver":             "cgroupfs", "cgroupRoot": cgroupRoot,
		"failSwapOn": false, "podLogsDir": filepath.Join(nodeDir, "pod-logs"),
		"evictionHard":                map[string]string{"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
		"imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
		"serializeImagePulls": false, "nodeStatusUpdateFrequency": "4s",
	})
	file := filepath.Join(nodeDir, "kubelet.json")
	return file, os.WriteFile(file, conf, 0o644)
}

// kubeconfigFor is a kubeconfig (JSON is YAML) for c's server with user's token
// (context "kiln-test").
func kubeconfigFor(c *Cluster, user, token string) []byte {
	b, _ := json.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "Config", "current-context": "kiln-test",
		"clusters": []any{map[string]any{"name": "kiln-test", "cluster": map[string]any{"server": c.Server, "certificate-authority": c.CAFile}}},
		"users":    []any{map[string]any{"name": user, "user": map[string]any{"token": token}}},
		"contexts": []any{map[string]any{"name": "kiln-test", "context": map[string]any{"cluster": "kiln-test", "user": user}}},
	})
	return b
}

// cleanNode removes what a node left: its processes (nodePrograms whose arguments refer
// to nodeDir) and its pods' (by their cgroups), its mounts (all under nodeDir), its
// bridge, kube-proxy's rules and the kubelet's chains, its files (nodeDir, unless
// something is still mounted there; the CNI plugins' records of its network). It leaves
// the kernel settings the kubelet changed (Stop puts them back), the shims' sockets
// under /run/containerd/s (containerd 1.6 puts them there, whatever its state dir) and
// the loopback plugin's records in /var/lib/cni/results. (runc's state is in nodeDir.)
// Each step is best effort: what is not there is no error.
func cleanNode(bin string) {
	for _, p := range nodeProcesses(nodePrograms...) {
		if p.own {
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
	hier, _ := os.ReadDir("/sys/fs/cgroup")
	for range 20 { // the pods' processes, until their cgroups are gone
		left := false
		for _, h := range hier {
			root := filepath.Join("/sys/fs/cgroup", h.Name(), cgroupRoot)
			var dirs []string
			filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- {
				b, _ := os.ReadFile(filepath.Join(dirs[i], "cgroup.procs"))
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil {
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
				if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
					left = true
				}
			}
		}
		if !left {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Mounts under nodeDir (overlays, volumes, the pods' network namespaces), the deepest
	// first.
	mounts := mountsUnder(nodeDir)
	for i := len(mounts) - 1; i >= 0; i-- {
		syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
	exec.Command("ip", "link", "del", bridge).Run()
	if bin != "" {
		// The kubeconfig, unread, names nodeDir: another test's NodePrerequisites takes
		// this kube-proxy for the harness's.
		exec.Command(filepath.Join(bin, "kube-proxy"), "--cleanup", "--kubeconfig="+filepath.Join(nodeDir, "kube-proxy.kubeconfig")).Run()
	}
	// The kubelet's own chains (kube-proxy's cleanup leaves them).
	for _, ipt := range []string{"iptables", "ip6tables"} {
		for _, hook := range []string{"INPUT", "OUTPUT"} {
			exec.Command(ipt, "-t", "filter", "-D", hook, "-j", "KUBE-FIREWALL").Run()
		}
		for _, table := range []string{"filter", "nat", "mangle"} {
			for _, chain := range []string{"KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT"} {
				exec.Command(ipt, "-t", table, "-F", chain).Run()
				exec.Command(ipt, "-t", table, "-X", chain).Run()
			}
		}
	}
	// What is still mounted under nodeDir would be removed through: its files are not
	// the node's. nodeDir stays then, for the next cleanNode.
	if len(mountsUnder(nodeDir)) == 0 {
		os.RemoveAll(nodeDir)
	}
	os.RemoveAll(filepath.Join("/var/lib/cni/networks", cniNetwork))
	results, _ := filepath.Glob("/var/lib/cni/results/" + cniNetwork + "-*")
	for _, r := range results {
		os.Remove(r)
	}
}

// nodePrograms are the programs a node runs (executables' base names).
var nodePrograms = []string{"containerd", "containerd-shim-runc-v2", "kubelet", "kube-proxy", "runc", "pause"}

// nodeProcess is a process of this machine running one of nodePrograms.
type nodeProcess struct {
	pid     int
	program string
	own     bool // one of its arguments refers to nodeDir: it is the harness's
}

// nodeProcesses lists this machine's processes whose program is one of programs: the
// base name of the executable, or of argv[0] when the executable cannot be read. An
// argument refers to nodeDir when it is a path under nodeDir (such as the value after a
// shim's -address) or a --flag= with one.
func nodeProcesses(programs ...string) []nodeProcess {
	var found []nodeProcess
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		b, err := os.ReadFile(f)
		if err != nil || len(b) == 0 { // gone, or a kernel thread
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		argv := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		exe, err := os.Readlink(filepath.Join(filepath.Dir(f), "exe"))
		if err != nil {
			exe = argv[0]
		}
		program := filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
		if !slices.Contains(programs, program) {
			continue
		}
		p := nodeProcess{pid: pid, program: program}
		for _, a := range argv[1:] {
			if strings.HasPrefix(a, "-") {
				_, a, _ = strings.Cut(a, "=") // "" when a is a flag alone
			}
			if a = filepath.Clean(a); a == nodeDir || strings.HasPrefix(a, nodeDir+"/") {
				p.own = true
				break
			}
		}
		found = append(found, p)
	}
	return found
}

// mountsUnder lists the mount points in dir or under it, in /proc/self/mountinfo's order
// (a mount after those it is made on).
func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var mounts []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			mounts = append(mounts, f[4])
		}
	}
	return mounts
}

// WriteInContainer writes a file at path in the container containerID (the pod's
// status gives it, "containerd://ID") as a hand on the node can, past the container's
// read-only root: into its writable layer (the overlay's upper directory).
func (n *Node) WriteInContainer(containerID, path string, data []byte) error {
	id := strings.TrimPrefix(containerID, "containerd://")
	procs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/pids", cgroupRoot, "kubepods", "*", id, "cgroup.procs"))
	more, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/pids", cgroupRoot, "kubepods", "*", "*", id, "cgroup.procs"))
	procs = append(procs, more...)
	if len(procs) == 0 {
		return fmt.Errorf("no cgroup of container %s", id)
	}
	b, err := os.ReadFile(procs[0])
	if err != nil {
		return err
	}
	pids := strings.Fields(string(b))
	if len(pids) == 0 {
		return fmt.Errorf("container %s runs no process", id)
	}
	info, err := os.ReadFile("/proc/" + pids[0] + "/mountinfo")
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(info), "\n") {
		f := strings.Fields(l)
		if len(f) < 10 || f[4] != "/" {
			continue
		}
		for _, o := range strings.Split(f[len(f)-1], ",") {
			if upper, ok := strings.CutPrefix(o, "upperdir="); ok {
				file := filepath.Join(upper, path)
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					return err
				}
				return os.WriteFile(file, data, 0o755)
			}
		}
	}
	return fmt.Errorf("container %s: no overlay root in its mounts", id)
}
