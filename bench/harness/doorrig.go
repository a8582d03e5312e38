package harness

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/buildinfo"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// What the door scenario runs, each in a process of its own: the upstream server,
// kiln's door and kamal-proxy, all in one network namespace with nothing but loopback,
// where the load generator runs too.

// netns is a network namespace of the harness's own, held open by a process; a nil
// *netns is the harness's namespace.
type netns struct {
	holder *exec.Cmd
	path   string // /proc/PID/ns/net
}

// newNetns makes a network namespace with its loopback up (unshare and nsenter, of
// util-linux; it needs root or CAP_SYS_ADMIN).
func newNetns(ctx context.Context) (*netns, error) {
	holder := exec.Command("unshare", "--net", "--", "sleep", "infinity")
	holder.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	holder.Stderr = &stderr
	if err := holder.Start(); err != nil {
		return nil, fmt.Errorf("unshare --net: %w", err)
	}
	n := &netns{holder: holder, path: fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid)}
	self, _ := os.Readlink("/proc/self/ns/net")
	// unshare execs sleep once the namespace is made: wait until it is another one.
	err := waitFor(ctx, 5*time.Second, 10*time.Millisecond, "unshare --net", func() (bool, error) {
		l, err := os.Readlink(n.path)
		if err != nil {
			return false, fmt.Errorf("%v: %s", err, stderr.String())
		}
		return l != self, nil
	})
	if err == nil {
		var out []byte
		if out, err = exec.CommandContext(ctx, "nsenter", "--net="+n.path, "--", "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			err = fmt.Errorf("bringing loopback up in the namespace (nsenter … ip link set lo up): %w: %s", err, tail(string(out), 300))
		}
	}
	if err != nil {
		n.close()
		return nil, err
	}
	return n, nil
}

// command is name args run in the namespace, killed when ctx ends: nsenter execs it, so the process's PID
// is the command's own.
func (n *netns) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if n == nil {
		return exec.CommandContext(ctx, name, args...)
	}
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + n.path, "--", name}, args...)...)
}

func (n *netns) close() {
	if n == nil || n.holder == nil {
		return
	}
	n.holder.Process.Kill()
	n.holder.Wait()
	n.holder = nil
}

// bgProc is a long-running process of the scenario, its standard output and error
// going to a log file.
type bgProc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan error
}

// startProc starts name args in ns, with env added to the harness's environment.
func startProc(ns *netns, log string, env []string, name string, args ...string) (*bgProc, error) {
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := ns.command(context.Background(), name, args...) // ended by stop, not by a context
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", filepath.Base(name), err)
	}
	p := &bgProc{name: filepath.Base(name), cmd: cmd, log: log, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	return p, nil
}

func (p *bgProc) pid() int { return p.cmd.Process.Pid }

// exited says why the process exited, or "" while it runs.
func (p *bgProc) exited() string {
	select {
	case err := <-p.done:
		p.done <- err
		b, _ := os.ReadFile(p.log)
		return fmt.Sprintf("%s exited (%v): %s", p.name, err, tail(string(b), 400))
	default:
		return ""
	}
}

// stop sends SIGTERM and waits (SIGKILL after 15 s).
func (p *bgProc) stop() {
	if p == nil || p.exited() != "" {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// writeSelfSigned writes a self-signed ECDSA P-256 certificate for localhost and
// 127.0.0.1, valid for a day, and its key (PKCS #8), as PEM files in dir. The
// certificate is its own CA: a client trusting it verifies the name as with any CA.
func writeSelfSigned(dir string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: doorHost, Organization: []string{"kiln-bench"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{doorHost},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", fmt.Errorf("creating the test certificate: %w", err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// doorConfig is the configuration kiln's door serves in the scenario, in its persisted
// format (package internal/door's Config): the HTTP service on listen, the HTTPS one
// (for doorHost, with the certificate files) on tlsListen, both forwarding to
// upstream, health-checked as kamal-proxy checks it (GET /up every second).
func doorConfig(listen, tlsListen, upstream, certFile, keyFile string) ([]byte, error) {
	health := map[string]any{"path": "/up", "interval": time.Second, "timeout": 5 * time.Second}
	services := []map[string]any{{"name": "web", "listen": listen, "upstreams": []string{upstream}, "health": health}}
	if tlsListen != "" {
		services = append(services, map[string]any{"name": "web-tls", "listen": tlsListen, "hosts": []string{doorHost},
			"upstreams": []string{upstream}, "health": health, "tls": map[string]string{"cert_file": certFile, "key_file": keyFile}})
	}
	return json.MarshalIndent(map[string]any{"generation": 1, "services": services}, "", "  ")
}

// kamalProxyEnv names the kamal-proxy binary the scenario runs; without it, the
// kamal-proxy on PATH.
const kamalProxyEnv = "KILN_BENCH_KAMAL_PROXY"

// kamalProxyBuild is what a kamal-proxy binary says of itself (Go's build information):
// its module, the commit it was built from, and how.
type kamalProxyBuild struct {
	Path, Module, Version, Go string
	Commit, CommitTime        string // "" when the binary was built without VCS stamping
	Modified                  bool
	Settings                  map[string]string // CGO_ENABLED, -trimpath, GOAMD64, …
}

func (b kamalProxyBuild) String() string {
	commit := "commit unknown (built without VCS stamping)"
	if b.Commit != "" {
		commit = "commit " + b.Commit
		if b.CommitTime != "" {
			commit += " (" + b.CommitTime + ")"
		}
		if b.Modified {
			commit += " with local changes"
		}
	}
	var how []string
	for _, k := range slices.Sorted(maps.Keys(b.Settings)) {
		how = append(how, k+"="+b.Settings[k])
	}
	return fmt.Sprintf("%s %s, %s, built with %s (%s)", b.Module, b.Version, commit, b.Go, strings.Join(how, " "))
}

// errNoKamalProxy means no kamal-proxy binary was found.
var errNoKamalProxy = errors.New("no kamal-proxy binary: set " + kamalProxyEnv + " to one (a build of github.com/basecamp/kamal-proxy's cmd/kamal-proxy), or put kamal-proxy on PATH")

// findKamalProxy finds the kamal-proxy binary and reads its build information; it
// refuses a binary that is not github.com/basecamp/kamal-proxy's.
func findKamalProxy() (kamalProxyBuild, error) {
	bin := os.Getenv(kamalProxyEnv)
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("kamal-proxy"); err != nil {
			return kamalProxyBuild{}, errNoKamalProxy
		}
	}
	return describeKamalProxy(bin)
}

func describeKamalProxy(bin string) (kamalProxyBuild, error) {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return kamalProxyBuild{}, fmt.Errorf("%s: reading its Go build information: %w", bin, err)
	}
	if bi.Main.Path != "github.com/basecamp/kamal-proxy" {
		return kamalProxyBuild{}, fmt.Errorf("%s is not kamal-proxy: its main module is %q, not github.com/basecamp/kamal-proxy", bin, bi.Main.Path)
	}
	b := kamalProxyBuild{Path: bin, Module: bi.Main.Path, Version: bi.Main.Version, Go: bi.GoVersion, Settings: map[string]string{}}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.time":
			b.CommitTime = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		case "CGO_ENABLED", "-trimpath", "GOAMD64":
			b.Settings[s.Key] = s.Value
		}
	}
	return b, nil
}

// kamalProxy is a running `kamal-proxy run` with the scenario's two services deployed.
type kamalProxy struct {
	build  kamalProxyBuild
	proc   *bgProc
	socket string
}

// kamalDeployFlags are what Kamal passes to `kamal-proxy deploy` when an app's proxy
// settings are left at their defaults (Kamal's lib/kamal/configuration/proxy.rb):
// request and response buffering on, three request headers logged; deploy and drain
// timeouts, health-check interval and path are kamal-proxy's defaults, as Kamal's.
var kamalDeployFlags = []string{"--buffer-requests", "--buffer-responses", "--log-request-header", "Cache-Control,Last-Modified,User-Agent"}

// startKamalProxy runs `kamal-proxy run` in ns on httpPort and httpsPort, its state
// under dir (HOME and KAMAL_PROXY_SOCKET point there), then deploys web (any host,
// HTTP) and web-tls (doorHost, TLS with the certificate files) to upstream with
// `kamal-proxy deploy`, which returns once the target passed a health check.
func startKamalProxy(ctx context.Context, ns *netns, b kamalProxyBuild, dir string, httpPort, httpsPort int, upstream, certFile, keyFile string) (*kamalProxy, error) {
	if err := os.MkdirAll(filepath.Join(dir, "home"), 0o755); err != nil {
		return nil, err
	}
	k := &kamalProxy{build: b, socket: filepath.Join(dir, "kamal-proxy.sock")}
	env := []string{"HOME=" + filepath.Join(dir, "home"), "KAMAL_PROXY_SOCKET=" + k.socket, "KAMAL_PROXY_DEBUG=false"}
	var err error
	k.proc, err = startProc(ns, filepath.Join(dir, "kamal-proxy.log"), env, b.Path, "run",
		"--http-port", strconv.Itoa(httpPort), "--https-port", strconv.Itoa(httpsPort))
	if err != nil {
		return nil, err
	}
	err = waitFor(ctx, 10*time.Second, 20*time.Millisecond, "kamal-proxy's control socket", func() (bool, error) {
		if why := k.proc.exited(); why != "" {
			return false, errors.New(why)
		}
		_, err := os.Stat(k.socket)
		return err == nil, err
	})
	deploys := [][]string{
		append([]string{"deploy", "web", "--target", upstream}, kamalDeployFlags...),
		append([]string{"deploy", "web-tls", "--target", upstream, "--host", doorHost, "--tls",
			"--tls-certificate-path", certFile, "--tls-private-key-path", keyFile}, kamalDeployFlags...),
	}
	for _, args := range deploys {
		if err != nil {
			break
		}
		cmd := exec.CommandContext(ctx, b.Path, args...)
		cmd.Env = append(os.Environ(), env...)
		if out, cerr := cmd.CombinedOutput(); cerr != nil {
			err = fmt.Errorf("kamal-proxy %s: %w: %s", strings.Join(args, " "), cerr, tail(string(out), 300))
		}
	}
	if err != nil {
		k.proc.stop()
		return nil, err
	}
	return k, nil
}

// truncateLog empties kamal-proxy's log (a JSON line per request, its default) between
// measurements, so that a run's requests do not fill the disk.
func (k *kamalProxy) truncateLog() { os.Truncate(k.proc.log, 0) }
