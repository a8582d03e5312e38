variable "version" {
  default = "dev"
}

image "web" {
  from = image.base
  env  = { VERSION = var.versoin }

  file "/etc/motd" {
    content = "${var.region} ${var.version}"
  }
}

image "a" {
  from = image.b
}

image "b" {
  from = image.a
}
