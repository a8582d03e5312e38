image "web" {
  from    = "scratch"
  colour  = "blue"
  user    = "1:1"

  copy "greeting.txt" {
    to     = "/etc/greeting"
    chmod  = "0644"
  }
}
