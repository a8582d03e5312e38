image "web" {
  from       = "scratch"
  entrypoint = "/app/web"
  env        = ["A=b"]
  expose     = [8080, "http"]

  go {
    package = "./cmd/web"
    cgo     = "maybe"
  }

  file "/etc/x" {
    content = "x"
    mode    = "rwx"
    owner   = "root"
  }
}
