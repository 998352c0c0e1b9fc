# Source me: points cargo's torch-sys build at the cached torch venv made by
# tools/setup.sh (LIBTORCH_USE_PYTORCH asks the venv's python where libtorch
# lives). Binaries embed an rpath to that folder (crates/lt-glmc/rpath.rs), so
# they run without LD_LIBRARY_PATH.
_lt_cache="${LT_GLMC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lt-glmc}"
export LT_GLMC_VENV="$_lt_cache/torch-2.11.0"
export PATH="$LT_GLMC_VENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
export LT_GLMC_PYTHON="$LT_GLMC_VENV/bin/python"
unset _lt_cache
