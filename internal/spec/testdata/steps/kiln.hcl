image "gcc" {
  from = "debian:bookworm-slim"
}

image "build" {
  from = image.gcc

  run "cc" {
    command = ["make", "-C", "src", "all"]
    inputs  = ["src"]
    workdir = "/work"
    outputs = ["/out", "src/hello.o"]
    env     = { CCACHE_DIR = "/cache/ccache" }
    cache   = ["/cache/ccache"]
  }
}

image "app" {
  from = "scratch"

  copy "/out/hello" {
    from = image.build
    to   = "/app/hello"
  }

  copy "/usr/share/doc/" {
    from    = image.build
    to      = "/usr/share/doc"
    mode    = "0644"
    owner   = "65532:65532"
    exclude = ["*.gz"]
  }

  entrypoint = ["/app/hello"]
}
