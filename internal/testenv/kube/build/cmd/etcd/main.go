// Command etcd is etcd's server, of the release Kubernetes' module requires: the
// control plane of kiln's Kubernetes tests stores its state in it.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
