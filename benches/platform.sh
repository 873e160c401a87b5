# Shared by benches that run `drover up`: a Git working copy of the platform fixture.
#
#   source benches/platform.sh; platform_repo DIR
platform_repo() {
  cp -r tests/fixtures/platform/. "$1/"
  git -C "$1" init -q -b main
  git -C "$1" config user.name bench
  git -C "$1" config user.email bench@example.test
  git -C "$1" add -A
  git -C "$1" commit -q -m "first"
}
