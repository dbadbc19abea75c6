# Shared by the appliance's boot, supervisor, console and shutdown scripts
# (busybox ash). Paths and the few helpers every script needs; sourced,
# never run.

GH_BIN=/usr/bin/gatehouse
GH_DATA=/var/lib/gatehouse           # the data disk: config, keys, recordings, logs
GH_CONFIG_DIR=$GH_DATA/config        # the applied seed (gatehouse.toml, secrets/, network.conf)
GH_LOG_DIR=$GH_DATA/log
GH_MINIMAL=/etc/gatehouse/minimal.toml
GH_RUN=/run/gatehouse                # this boot's state, read by the console screen

# The config the daemon runs with, chosen at boot (empty: do not start).
gh_config() {
    cat "$GH_RUN/config" 2>/dev/null
}

# A line on the system console (the serial port when there is one) and in
# this boot's notes, which the status screen shows.
say() {
    echo "gatehouse: $*" >/dev/console
    echo "$*" >>"$GH_RUN/notes"
}

# Whether a file system is mounted at the path (before /proc is mounted:
# no). busybox has no mountpoint applet.
is_mounted() {
    grep -q "^[^ ]* $1 " /proc/mounts 2>/dev/null
}

# The value of NAME=VALUE on the kernel command line, or $2.
cmdline_arg() {
    for arg in $(cat /proc/cmdline); do
        case $arg in
        "$1"=*)
            echo "${arg#*=}"
            return 0
            ;;
        esac
    done
    echo "${2-}"
}

# The value of `key = "value"` (or an unquoted value) in a TOML section,
# for the status screen. Not a TOML parser: enough for the flat
# [appliance] and [listen] tables the appliance reads.
toml_value() { # FILE SECTION KEY
    sed -n "/^\[$2\][[:space:]]*\$/,/^\[/{
        s/^[[:space:]]*$3[[:space:]]*=[[:space:]]*\"\([^\"]*\)\".*/\1/p
        s/^[[:space:]]*$3[[:space:]]*=[[:space:]]*\([^\"#[:space:]][^#[:space:]]*\).*/\1/p
    }" "$1" | head -n 1
}
