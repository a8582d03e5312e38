// Package dockerimage reads images out of the local Docker engine, for the bases a spec
// names as docker://REF; loading images into the engine is the Docker driver's.
package dockerimage
