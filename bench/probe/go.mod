module github.com/kiln-build/kiln/bench/probe

go 1.24
