package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/kiln-build/kiln/internal/driver"
)

// Options of the driver (driver.Config.Options), as a runtime block or
// `kiln serve --driver-option` names them.
const (
	// OptionKubeconfig is the kubeconfig file; "" is $KUBECONFIG, else ~/.kube/config,
	// else the cluster kiln runs in (its service account).
	OptionKubeconfig = "kubeconfig"
	// OptionContext is the kubeconfig's context; "" is its current one.
	OptionContext = "context"
	// OptionNamespace is where kiln's objects live ("default" when unset). kiln makes
	// it, enforcing the restricted profile, if it does not exist.
	OptionNamespace = "namespace"
	// OptionRegistry is the registry (host[:port][/path]) EnsureImage pushes images
	// to; OptionPullRegistry the name the cluster's nodes pull it by (the same when
	// unset).
	OptionRegistry     = "registry"
	OptionPullRegistry = "pull_registry"
	// OptionStopTimeout is a server's grace period when its spec sets none (10s).
	OptionStopTimeout = "stop_timeout"
	// OptionServiceType is the type of the Services that carry services' traffic:
	// ClusterIP (the default), NodePort or LoadBalancer.
	OptionServiceType = "service_type"
	// OptionBreakGlassGroup is the group that may still exec into kiln's pods
	// (DefaultBreakGlassGroup when unset).
	OptionBreakGlassGroup = "break_glass_group"
	// OptionAuditLog is the API server's audit log (JSON lines, as kube-apiserver's
	// --audit-log-format=json writes them), which kiln must be able to read: when set,
	// Watch reports exec, attach and port-forward into kiln's pods as EventExec (see
	// audit.go). Only a self-managed control plane has such a file.
	OptionAuditLog = "audit_log"
	// OptionKubeletCA is the CA (a PEM file) that verifies the kubelets' serving
	// certificates: when set, Diff reads each node's summary from its kubelet (its own
	// port, as OptionKubeletKubeconfig's user) and reports a pod's writable layer
	// changed on the node as file drift (files.go).
	OptionKubeletCA = "kubelet_ca"
	// OptionKubeletKubeconfig is a kubeconfig whose user kiln is to the kubelets (it
	// needs only nodes/stats): without it, kiln's own user must be a client
	// certificate, for kiln sends no token to a kubelet.
	OptionKubeletKubeconfig = "kubelet_kubeconfig"
)

// OptionNames are the driver's options.
var OptionNames = []string{OptionKubeconfig, OptionContext, OptionNamespace, OptionRegistry, OptionPullRegistry, OptionStopTimeout, OptionBreakGlassGroup, OptionServiceType, OptionAuditLog, OptionKubeletCA, OptionKubeletKubeconfig}

// klogOnce sets klog's logger once a process.
var klogOnce sync.Once

// FieldManager is the name kiln's server-side applies are recorded under.
const FieldManager = "kiln"

// Driver runs servers as pods of one namespace of a cluster.
type Driver struct {
	cs          clientset.Interface
	namespace   string
	project     string
	registry    string // pushed to; "" when none is set
	pull        string // pulled from
	defaultStop time.Duration
	breakGlass  string
	serviceType corev1.ServiceType
	auditLog    string    // the API server's audit log; "" when none is set
	auditState  string    // where how far the log was read is kept, across restarts; "" for nowhere
	kubelets    *kubelets // the nodes' kubelets, read for file drift; nil without OptionKubeletCA
	log         *slog.Logger
	// guarded: the admission policy that denies exec and the like is in place.
	guarded bool

	pushes singleflight.Group
	watch  watcher
	mu     sync.Mutex
	pushed map[string]bool    // digests pushed or found in the registry
	sets   map[string]readSet // ReplicaSets read for diffs, by name
}

// Open connects to the cluster cfg's options name and checks that its API server
// answers (else the error wraps driver.ErrUnavailable), then makes the namespace if it
// does not exist.
func Open(ctx context.Context, cfg driver.Config) (*Driver, error) {
	if err := cfg.CheckOptions(OptionNames...); err != nil {
		return nil, err
	}
	stop, err := cfg.Duration(OptionStopTimeout, 10*time.Second)
	if err != nil {
		return nil, err
	}
	// client-go logs through klog: into kiln's log instead of the daemon's stderr.
	// klog's logger is the process's, and may not change while klog is in use: the
	// first driver opened sets it.
	klogOnce.Do(func() { klog.SetSlogLogger(cfg.Logger()) })
	rc, err := restConfig(cfg.Options[OptionKubeconfig], cfg.Options[OptionContext])
	if err != nil {
		return nil, err
	}
	rc.UserAgent = "kiln"
	// A rollout of many pods makes a few calls a pod; client-go's default (5 a second)
	// would hold it up for minutes. The API server's priority and fairness still apply.
	rc.QPS, rc.Burst = 100, 200
	cs, err := clientset.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", rc.Host, err)
	}
	d := &Driver{
		cs: cs, namespace: cfg.Options[OptionNamespace], project: cfg.Project,
		registry: strings.TrimSuffix(cfg.Options[OptionRegistry], "/"), defaultStop: stop, log: cfg.Logger(),
		pushed: map[string]bool{}, sets: map[string]readSet{},
	}
	if d.namespace == "" {
		d.namespace = "default"
	}
	switch t := corev1.ServiceType(cfg.Options[OptionServiceType]); t {
	case "":
		d.serviceType = corev1.ServiceTypeClusterIP
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer:
		d.serviceType = t
	default:
		return nil, fmt.Errorf("driver option %s: %q is not ClusterIP, NodePort or LoadBalancer", OptionServiceType, t)
	}
	if d.breakGlass = cfg.Options[OptionBreakGlassGroup]; d.breakGlass == "" {
		d.breakGlass = DefaultBreakGlassGroup
	}
	if d.auditLog = cfg.Options[OptionAuditLog]; d.auditLog != "" {
		if err := checkAuditLog(d.auditLog); err != nil {
			return nil, err
		}
		if cfg.StateDir != "" {
			d.auditState = filepath.Join(cfg.StateDir, "kubernetes-audit.json")
		}
	}
	if ca := cfg.Options[OptionKubeletCA]; ca != "" {
		if _, err := os.Stat(ca); err != nil {
			return nil, fmt.Errorf("driver option %s: %w: name the PEM file of the CA that signs the kubelets' serving certificates, or unset %s", OptionKubeletCA, err, OptionKubeletCA)
		}
		if d.kubelets, err = newKubelets(rc, ca, cfg.Options[OptionKubeletKubeconfig]); err != nil {
			return nil, err
		}
	}
	d.pull = strings.TrimSuffix(cfg.Options[OptionPullRegistry], "/")
	if d.pull == "" {
		d.pull = d.registry
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ping := rest.CopyConfig(rc)
	ping.Timeout = 10 * time.Second
	if pcs, err := clientset.NewForConfig(ping); err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", rc.Host, err)
	} else if _, err := pcs.Discovery().ServerVersion(); err != nil {
		return nil, fmt.Errorf("%w: the Kubernetes API server at %s does not answer: %v", driver.ErrUnavailable, rc.Host, err)
	}
	if err := d.ensureNamespace(pctx); err != nil {
		return nil, err
	}
	if d.guarded, err = d.ensurePolicy(pctx); err != nil {
		return nil, err
	}
	return d, nil
}

// restConfig is the client configuration of a kubeconfig file and context: the
// standard loading rules when file is "", and the in-cluster configuration when there
// is no kubeconfig at all.
func restConfig(file, context string) (*rest.Config, error) {
	if rest, ok := strings.CutPrefix(file, "~/"); ok {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", file, err)
		}
		file = filepath.Join(home, rest)
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = file
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context})
	rc, err := cc.ClientConfig()
	if clientcmd.IsEmptyConfig(err) && file == "" {
		if rc, err = rest.InClusterConfig(); err == nil {
			return rc, nil
		}
		return nil, fmt.Errorf("no kubeconfig (set the runtime's kubeconfig, or $KUBECONFIG) and not in a cluster: %w", err)
	}
	if err != nil {
		where := file
		if where == "" {
			where = strings.Join(rules.Precedence, ", ")
		}
		return nil, fmt.Errorf("reading the kubeconfig %s: %w", where, err)
	}
	return rc, nil
}

// ensureNamespace makes the driver's namespace, labelled to enforce the restricted
// Pod Security profile, unless it exists (whatever its labels: it is the user's).
func (d *Driver) ensureNamespace(ctx context.Context) error {
	_, err := d.cs.CoreV1().Namespaces().Get(ctx, d.namespace, metav1.GetOptions{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return d.check(fmt.Errorf("reading namespace %s: %w", d.namespace, err))
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: d.namespace, Labels: map[string]string{
		LabelManagedBy:                       managedBy,
		"pod-security.kubernetes.io/enforce": "restricted",
		"pod-security.kubernetes.io/warn":    "restricted",
	}}}
	if _, err := d.cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{FieldManager: FieldManager}); err != nil && !apierrors.IsAlreadyExists(err) {
		return d.check(fmt.Errorf("making namespace %s: %w", d.namespace, err))
	}
	return nil
}

// Name is "kubernetes".
func (d *Driver) Name() string { return "kubernetes" }

// Namespace is where the driver's objects live.
func (d *Driver) Namespace() string { return d.namespace }

// Capabilities: what the pods get and what the driver tells of them. A pod's PIDs are
// limited by the kubelet (podPidsLimit), not per pod; a project's pods are not kept
// apart on the network (that takes a NetworkPolicy and a plugin that enforces one);
// exec is seen only from the API server's audit log (OptionAuditLog), changed files
// only from the kubelets' summaries (OptionKubeletCA).
func (d *Driver) Capabilities() driver.Capabilities {
	return driver.Capabilities{
		ReadOnlyRoot: true, Tmpfs: true, MemoryLimit: true, CPULimit: true, NoPrivileges: true, SecretFiles: true,
		LoadImages: true, Events: true, Logs: true, Sets: true, Readiness: true, ConfigDiff: true, Traffic: true,
		ExecEvents: d.auditLog != "", FileDiff: d.kubelets != nil,
	}
}

// Close stops the driver's informer and closes its watches; the pods outlive kiln.
func (d *Driver) Close() error {
	d.closeWatch()
	return nil
}

// check wraps err with driver.ErrUnavailable when the API server could not be reached.
func (d *Driver) check(err error) error {
	var ne net.Error
	if errors.As(err, &ne) || apierrors.IsServiceUnavailable(err) || apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) {
		return fmt.Errorf("%w: %w", driver.ErrUnavailable, err)
	}
	return err
}
