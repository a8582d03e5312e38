image "web" {
  from = "scratch"
  env = {
    A = "b"

image "other" {
  from = "scratch"
}
