// Package kubernetes is the driver that runs servers as pods of a Kubernetes cluster:
// each revision of a service as one ReplicaSet (a SetDriver), which keeps its pods
// alive while kiln is down, owned by one ConfigMap per service so that deleting it
// collects them all. Pods run the image by digest from a registry the cluster pulls
// from (EnsureImage pushes it there), under the Pod Security "restricted" profile, with
// a read-only root and their secrets in a Secret. It talks to the API server with
// client-go: server-side apply as field manager "kiln", informers to watch.
package kubernetes
