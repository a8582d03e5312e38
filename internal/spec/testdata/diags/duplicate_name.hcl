variable "version" {
  default = "1"
}

variable "version" {
  default = "2"
}

image "web" {
  from = "scratch"
}

image "web" {
  from = "scratch"
}

image "Bad_Name" {
  from = "scratch"

  file "/etc/a" {
    content = "a"
  }

  file "/etc/a" {
    content = "b"
  }
}
