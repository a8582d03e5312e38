variable "port" {
  type = number
}

image "web" {
  from     = "not a valid ref!"
  platform = "linux"
  workdir  = "srv"

  copy "greeting.txt" {
    to = "etc/greeting"
  }

  file "motd" {
    content = "x"
  }
}
