variable "version" {
  default = "dev"
}

variable "replicas" {
  type    = number
  default = 2
}

variable "region" {
  default = "home"
}

image "base" {
  from     = "scratch"
  platform = "linux/arm64"

  file "/etc/motd" {
    content = "built by kiln ${var.version}\n"
    mode    = 0600
    owner   = "1:1"
  }
}

image "web" {
  from = image.base

  go {
    package = "./cmd/web"
    ldflags = ["-X main.version=${var.version}"]
    tags    = ["netgo"]
  }

  copy "static" {
    to      = "/srv/static"
    exclude = ["*.tmp"]
  }

  copy "greeting.txt" {
    to   = "/etc/web/"
    mode = "0640"
  }

  file "/etc/web/region" {
    content = upper(var.region)
  }

  env        = { REGION = var.region, GREETING = trimspace(file("greeting.txt")) }
  entrypoint = ["/app/web", "--serve"]
  cmd        = ["--port", "8080"]
  workdir    = "/srv"
  user       = "65532:65532"
  labels     = { team = "platform" }
  expose     = [8080, "53/udp"]
}
