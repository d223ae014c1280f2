# Sourced by the scripts that run weir beside a peer (bench-raw-dd.sh,
# bench-flink.sh): cargo on the PATH, sccache when there is one, and the
# peer's folder ($PEER) checked.
export PATH="$HOME/.cargo/bin:$PATH"
if command -v sccache >/dev/null 2>&1; then
  export RUSTC_WRAPPER=sccache
fi
if [ ! -d "$PEER" ]; then
  echo "no peer at $PEER (set PEER=)" >&2
  exit 1
fi
