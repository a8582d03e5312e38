package kubernetes

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kiln-build/kiln/internal/driver"
)

// Labels and annotations kiln puts on what it makes. Labels select (their values are
// label-safe forms of the names); annotations hold the exact values.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by" // "kiln"
	LabelName      = "app.kubernetes.io/name"       // the service
	LabelInstance  = "app.kubernetes.io/instance"   // the service in its project
	LabelVersion   = "app.kubernetes.io/version"    // "r<revision>"
	LabelProject   = "kiln.dev/project"
	LabelService   = "kiln.dev/service"
	LabelRevision  = "kiln.dev/revision"
	LabelIdentity  = "kiln.dev/identity" // driver.ServerSpec.Identity
	LabelRole      = "kiln.dev/role"     // a candidate's role; absent on a service's servers

	AnnotationService  = "kiln.dev/service"
	AnnotationSpecHash = "kiln.dev/spec-hash" // driver.ServerSpec.Hash, in full
	AnnotationImage    = "kiln.dev/image"     // the manifest digest, in full
	AnnotationSpec     = "kiln.dev/spec"      // the ServerSpec as JSON, without env or file values
	// AnnotationDeletionCost is the ReplicaSet controller's hint of which pod to remove
	// first when it scales down (lower first).
	AnnotationDeletionCost = "controller.kubernetes.io/pod-deletion-cost"

	managedBy = "kiln"
	// container is the name of a server's container in its pod.
	container = "server"
)

// labelValue is s as a label value: s itself when it is one, else a prefix of it made
// safe and a digest of the whole, so that two names never share a value.
func labelValue(s string) string {
	if len(validation.IsValidLabelValue(s)) == 0 {
		return s
	}
	return safeName(s, validation.LabelValueMaxLength)
}

// objectName is s as the start of an object's name (a DNS label of at most max
// characters): s itself when it is one, else a safe prefix of it and a digest of the
// whole.
func objectName(s string, max int) string {
	if len(s) <= max && len(validation.IsDNS1123Label(s)) == 0 {
		return s
	}
	return safeName(s, max)
}

func safeName(s string, max int) string {
	sum := sha256.Sum256([]byte(s))
	tag := hex.EncodeToString(sum[:])[:8]
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	prefix := strings.Trim(b.String(), "-")
	if room := max - len(tag) - 1; len(prefix) > room {
		prefix = strings.TrimRight(prefix[:room], "-")
	}
	if prefix == "" {
		return "k" + tag
	}
	return prefix + "-" + tag
}

// ownerName is the name of the ConfigMap that owns a service's objects.
func ownerName(project, service string) string {
	return "kiln-" + objectName(project+"-"+service, 40)
}

// setName is the name of a revision's ReplicaSet (its pods' names add 6 characters).
func setName(ref driver.SetRef) string {
	return objectName(ref.Service, 40) + "-r" + strconv.FormatInt(ref.Revision, 10)
}

// serviceLabels select every object of one service of one project.
func serviceLabels(project, service string) map[string]string {
	return map[string]string{
		LabelManagedBy: managedBy,
		LabelProject:   labelValue(project),
		LabelService:   labelValue(service),
	}
}

// setSelector is the label selector of a revision's ReplicaSet.
func setSelector(ref driver.SetRef) map[string]string {
	m := serviceLabels(ref.Project, ref.Service)
	m[LabelRevision] = strconv.FormatInt(ref.Revision, 10)
	return m
}

// serverLabels are the labels of a server made from spec: its set's selector and the
// recommended labels.
func serverLabels(spec driver.ServerSpec) map[string]string {
	m := setSelector(driver.SetOf(spec))
	m[LabelName] = labelValue(spec.Service)
	m[LabelInstance] = labelValue(spec.Project + "-" + spec.Service)
	m[LabelVersion] = "r" + strconv.FormatInt(spec.Revision, 10)
	m[LabelIdentity] = spec.Identity()
	if spec.Role != "" {
		m[LabelRole] = labelValue(spec.Role)
	}
	return m
}

// recorded is the spec as kiln records it on the objects: no env or file value (they
// are not in its JSON).
func recorded(spec driver.ServerSpec) map[string]string {
	b, err := json.Marshal(spec)
	if err != nil {
		panic("kubernetes: a server spec must marshal: " + err.Error())
	}
	return map[string]string{
		AnnotationService:  spec.Service,
		AnnotationSpecHash: spec.Hash(),
		AnnotationImage:    spec.Image,
		AnnotationSpec:     string(b),
	}
}

// specOf reads the spec recorded in annotations; ok is false when there is none.
func specOf(annotations map[string]string) (driver.ServerSpec, bool) {
	var spec driver.ServerSpec
	raw, ok := annotations[AnnotationSpec]
	if !ok || json.Unmarshal([]byte(raw), &spec) != nil {
		return driver.ServerSpec{}, false
	}
	return spec, true
}

// secretKeys are the keys of the server's env and file values in its Secret, by
// "env:NAME" and "file:/path" (as Digests): indexes in sorted order, since a Secret's
// keys allow fewer characters than names and paths.
func secretKeys(spec driver.ServerSpec) map[string]string {
	var names []string
	for k := range spec.Env {
		names = append(names, "env:"+k)
	}
	for p := range spec.Files {
		names = append(names, "file:"+p)
	}
	slices.Sort(names)
	keys := make(map[string]string, len(names))
	for i, n := range names {
		kind, _, _ := strings.Cut(n, ":")
		keys[n] = fmt.Sprintf("%s-%d", kind, i)
	}
	return keys
}

// secretData is the Secret's data for spec: its env and file values by secretKeys.
func secretData(spec driver.ServerSpec) map[string][]byte {
	keys := secretKeys(spec)
	data := make(map[string][]byte, len(keys))
	for k, v := range spec.Env {
		data[keys["env:"+k]] = []byte(v)
	}
	for p, v := range spec.Files {
		data[keys["file:"+p]] = v
	}
	return data
}

// hasSecrets reports whether the spec has values to keep in a Secret.
func hasSecrets(spec driver.ServerSpec) bool { return len(spec.Env)+len(spec.Files) > 0 }

// defaultUser is the uid of a server whose spec names no user.
const defaultUser = 65532

// user parses a ServerSpec.User ("uid[:gid]") for the pod's security context: the
// restricted profile runs no pod as root, and Kubernetes takes numbers only.
func user(s string) (uid int64, gid *int64, err error) {
	if s == "" {
		return defaultUser, nil, nil
	}
	u, g, hasGroup := strings.Cut(s, ":")
	uid, err = strconv.ParseInt(u, 10, 64)
	if err != nil || uid < 0 {
		return 0, nil, fmt.Errorf("user %q is not a numeric uid[:gid]: Kubernetes runs containers by number; set the service's user to one", s)
	}
	if uid == 0 {
		return 0, nil, fmt.Errorf("user %q is root, which the Pod Security restricted profile kiln runs pods under forbids: set the service's user to another uid", s)
	}
	if hasGroup {
		n, err := strconv.ParseInt(g, 10, 64)
		if err != nil || n < 0 {
			return 0, nil, fmt.Errorf("user %q: group %q is not a number", s, g)
		}
		gid = &n
	}
	return uid, gid, nil
}

// podSpec is the pod a server made from spec runs as: image by digest, locked down to
// the restricted profile, a read-only root with a memory-backed emptyDir per writable
// path, env and files from secret (unless none), limits from its resources.
func (d *Driver) podSpec(spec driver.ServerSpec, secret string) (corev1.PodSpec, error) {
	uid, gid, err := user(spec.User)
	if err != nil {
		return corev1.PodSpec{}, err
	}
	no, yes := false, true
	c := corev1.Container{
		Name:            container,
		Image:           d.imageRef(spec.Image),
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         spec.Command,
		Args:            spec.Args,
		Ports:           []corev1.ContainerPort{{Name: "serve", ContainerPort: int32(spec.Port), Protocol: corev1.ProtocolTCP}},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: &no,
			Privileged:               &no,
			ReadOnlyRootFilesystem:   &yes,
			RunAsNonRoot:             &yes,
			RunAsUser:                &uid,
			RunAsGroup:               gid,
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Resources:                resources(spec.Resources),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		ReadinessProbe:           readinessProbe(spec),
	}
	var volumes []corev1.Volume
	for i, p := range spec.Writable {
		name := fmt.Sprintf("writable-%d", i)
		volumes = append(volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: name, MountPath: p})
	}
	keys := secretKeys(spec)
	envNames := make([]string, 0, len(spec.Env))
	for k := range spec.Env {
		envNames = append(envNames, k)
	}
	slices.Sort(envNames)
	for _, k := range envNames {
		c.Env = append(c.Env, corev1.EnvVar{Name: k, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: keys["env:"+k]}}})
	}
	if len(spec.Files) > 0 {
		mode := int32(0o400)
		volumes = append(volumes, corev1.Volume{Name: "secret-files", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: secret, DefaultMode: &mode}}})
		paths := make([]string, 0, len(spec.Files))
		for p := range spec.Files {
			paths = append(paths, p)
		}
		slices.Sort(paths)
		for _, p := range paths {
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "secret-files", MountPath: p, SubPath: keys["file:"+p], ReadOnly: true})
		}
	}
	grace := int64(math.Ceil(d.stopTimeout(spec).Seconds()))
	// Init: the pod's sandbox process is PID 1 of a shared process namespace, so it
	// reaps the server's children and the server, not PID 1, gets default signal
	// handling. (A stop signal other than the image's cannot be set per pod without an
	// alpha feature: StopSignal is not honoured here.)
	var share *bool
	if spec.Init {
		share = &yes
	}
	return corev1.PodSpec{
		ShareProcessNamespace:         share,
		Containers:                    []corev1.Container{c},
		Volumes:                       volumes,
		RestartPolicy:                 corev1.RestartPolicyAlways,
		TerminationGracePeriodSeconds: &grace,
		AutomountServiceAccountToken:  &no,
		EnableServiceLinks:            &no,
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:   &yes,
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}, nil
}

// stopTimeout is how long a server is given to stop: its own, else the driver's.
func (d *Driver) stopTimeout(spec driver.ServerSpec) time.Duration {
	if spec.StopTimeout > 0 {
		return spec.StopTimeout
	}
	return d.defaultStop
}

// resources are the container's requests and limits: memory always, CPU when set.
// Requests equal limits, so the scheduler places a server where its limits fit.
func resources(r driver.Resources) corev1.ResourceRequirements {
	if r.MemoryBytes == 0 {
		r.MemoryBytes = driver.DefaultResources.MemoryBytes
	}
	l := corev1.ResourceList{corev1.ResourceMemory: *resource.NewQuantity(r.MemoryBytes, resource.BinarySI)}
	if r.CPUs > 0 {
		l[corev1.ResourceCPU] = *resource.NewMilliQuantity(int64(math.Ceil(r.CPUs*1000)), resource.DecimalSI)
	}
	return corev1.ResourceRequirements{Limits: l, Requests: l.DeepCopy()}
}

// meta is the object meta of what kiln makes for spec.
func meta(name string, spec driver.ServerSpec) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Labels: serverLabels(spec), Annotations: recorded(spec)}
}

// readinessProbe is the spec's Probe as the kubelet runs it, nil when it has none.
func readinessProbe(spec driver.ServerSpec) *corev1.Probe {
	p := spec.Probe
	if p == nil {
		return nil
	}
	port := intstr.FromInt32(int32(spec.Port))
	h := corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: port}}
	if p.HTTPPath != "" {
		h = corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: p.HTTPPath, Port: port, Scheme: corev1.URISchemeHTTP}}
	}
	secs := func(d time.Duration, min int32) int32 { return max(min, int32(math.Ceil(d.Seconds()))) }
	return &corev1.Probe{
		ProbeHandler:        h,
		InitialDelaySeconds: secs(p.InitialDelay, 0),
		PeriodSeconds:       secs(p.Period, 1),
		TimeoutSeconds:      secs(p.Timeout, 1),
		SuccessThreshold:    max(1, int32(p.SuccessThreshold)),
		FailureThreshold:    max(1, int32(p.FailureThreshold)),
	}
}
