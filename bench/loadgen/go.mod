module github.com/kiln-build/kiln/bench/loadgen

go 1.24
