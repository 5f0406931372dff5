# Sourced by the device-call scripts of bench/gpu (docs/gpu-runs.md), from the repository root: unpacks .gpu/dotnet.tar.xz
# into /tmp/dotnet-runtime (once per machine) and each named app of .gpu (<name>.tar.xz, a published folder <name>/ at its
# top) into /tmp, and points .NET and TorchSharp at the machine's PyTorch libtorch (as ../shared/gpu/run.sh does).
#   . bench/gpu/runtime.sh tb-new eb-new ...      then  "$dn/dotnet" /tmp/tb-new/App.dll args
dn=/tmp/dotnet-runtime
[ -x "$dn/dotnet" ] || { mkdir -p "$dn"; tar -C "$dn" -xJf .gpu/dotnet.tar.xz; }
for app in "$@"; do [ -d "/tmp/$app" ] || tar -C /tmp -xJf ".gpu/$app.tar.xz"; done
torchlib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export DOTNET_ROOT=$dn DOTNET_CLI_TELEMETRY_OPTOUT=1 SPECDECODE_LIBTORCH="$torchlib"
export LD_LIBRARY_PATH="$torchlib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
