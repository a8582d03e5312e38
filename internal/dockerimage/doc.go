// Package dockerimage moves images between kiln and the local Docker engine: it reads
// the bases a spec names as docker://REF and loads baked images for `kiln bake --load`.
package dockerimage
