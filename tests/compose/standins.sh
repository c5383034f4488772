#!/usr/bin/env bash
# Sourced by tests/compose/run.sh. When no registry answers (an offline host, or this project's
# machines), builds stand-ins for the official base images from Debian's packages under LOCAL
# names, and exports them through the same variables an operator with a registry mirror would set
# (BUILDER_IMAGE, NODE_IMAGE, RUNTIME_IMAGE, REDIS_IMAGE, NGINX_IMAGE). Official names are never re-tagged.
#
# - debian bookworm minbase (debootstrap) is the base of the builder, redis and runtime stand-ins;
# - nginx comes from Debian unstable, the first Debian nginx with `resolve` on upstream servers
#   (nginx >= 1.27.3), which nginx/upstream.conf uses to follow container addresses;
# - the builder carries this machine's Rust toolchain (the version of deploy/Dockerfile's default)
#   and this machine's CA bundle, so cargo inside the build reaches crates.io through the same
#   TLS-inspecting egress proxy the host uses (an operator's own builder image needs neither);
# - the runtime is distroless-like: libc, libgcc, libssl, libstdc++, tzdata and a nonroot user.

standin_prefix=${STANDIN_PREFIX:-gateway-standin}

image_exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

debootstrap_image() { # name suite
    local name=$1 suite=$2
    image_exists "$name" && return
    command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    local dir="$COMPOSE_TMP/rootfs-$suite"
    rm -rf "$dir"
    debootstrap --variant=minbase "$suite" "$dir" http://deb.debian.org/debian >"$COMPOSE_TMP/debootstrap-$suite.log" 2>&1 \
        || { echo "debootstrap $suite failed: see $COMPOSE_TMP/debootstrap-$suite.log"; return 1; }
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    tar -C "$dir" -c . | "$DOCKER" import --change 'CMD ["bash"]' - "$name" >/dev/null
    rm -rf "$dir"
}

# docker build from a Dockerfile on stdin with an empty context.
build_from_stdin() { # name
    "$DOCKER" build -q -t "$1" - >/dev/null
}

standin_builder() { # name rust-version
    local name=$1 version=$2
    image_exists "$name" && return
    local sysroot
    sysroot=$(rustc "+$version" --print sysroot 2>/dev/null || rustc --print sysroot)
    if [[ $(rustc --version) != "rustc $version "* ]] && ! rustc "+$version" --version >/dev/null 2>&1; then
        echo "the host has no Rust $version toolchain for the builder stand-in (rustup toolchain install $version)"
        return 1
    fi
    local ctx="$COMPOSE_TMP/builder-context"
    rm -rf "$ctx" && mkdir -p "$ctx/toolchain"
    cp -a "$sysroot/bin" "$sysroot/lib" "$ctx/toolchain/"
    cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
    cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $standin_prefix/debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY toolchain /usr/local/rust
ENV CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
DOCKERFILE
    "$DOCKER" build -q -t "$name" "$ctx" >/dev/null
    rm -rf "$ctx"
}

standin_runtime() { # name
    local name=$1
    image_exists "$name" && return
    local dir="$COMPOSE_TMP/runtime-rootfs" debs="$COMPOSE_TMP/runtime-debs"
    rm -rf "$dir" "$debs" && mkdir -p "$dir" "$debs"
    (cd "$debs" && apt-get download -qq libc6 libgcc-s1 libssl3 libstdc++6 tzdata netbase base-files >/dev/null)
    local deb
    for deb in "$debs"/*.deb; do dpkg -x "$deb" "$dir"; done
    rm -rf "$dir/usr/share/doc" "$dir/usr/share/man" "$dir/usr/share/lintian" "$dir/usr/share/locale"
    mkdir -p "$dir/tmp" "$dir/home/nonroot" && chmod 1777 "$dir/tmp"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$dir/etc/passwd"
    printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/etc/group"
    tar -C "$dir" --owner=0 --group=0 -c . \
        | "$DOCKER" import --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' - "$name" >/dev/null
    rm -rf "$dir" "$debs"
}

standin_redis() { # name
    image_exists "$1" && return
    build_from_stdin "$1" <<DOCKERFILE
FROM $standin_prefix/debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends redis-server && rm -rf /var/lib/apt/lists/*
CMD ["redis-server", "--protected-mode", "no"]
DOCKERFILE
}

standin_nginx() { # name
    image_exists "$1" && return
    build_from_stdin "$1" <<DOCKERFILE
FROM $standin_prefix/debian:sid
# A mirror of unstable may serve a Release file past its Valid-Until on a machine whose clock runs
# ahead; the packages are still signed, which is what matters for a test stand-in.
RUN apt-get -o Acquire::Check-Valid-Until=false update && apt-get install -y --no-install-recommends nginx wget && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/cache/nginx
CMD ["nginx", "-g", "daemon off;"]
DOCKERFILE
}

# Exports the five image variables: the official defaults when the registry answers, local
# stand-ins otherwise. An operator's values already in the environment are kept.
choose_base_images() { # rust-version
    local rust_version=$1
    if [[ -n ${BUILDER_IMAGE:-} && -n ${NODE_IMAGE:-} && -n ${RUNTIME_IMAGE:-} && -n ${REDIS_IMAGE:-} && -n ${NGINX_IMAGE:-} ]]; then
        return
    fi
    if timeout 20 "$DOCKER" pull -q "redis:7.4-alpine" >/dev/null 2>&1; then
        echo "compose: a registry answers: official base images"
        return
    fi
    echo "compose: no registry answers: building stand-in base images from Debian packages ($standin_prefix/*)"
    debootstrap_image "$standin_prefix/debian:bookworm" bookworm
    debootstrap_image "$standin_prefix/debian:sid" sid
    export BUILDER_IMAGE=${BUILDER_IMAGE:-$standin_prefix/rust:$rust_version}
    export NODE_IMAGE=${NODE_IMAGE:-$standin_prefix/node:host}
    export RUNTIME_IMAGE=${RUNTIME_IMAGE:-$standin_prefix/cc-runtime:nonroot}
    export REDIS_IMAGE=${REDIS_IMAGE:-$standin_prefix/redis:7}
    export NGINX_IMAGE=${NGINX_IMAGE:-$standin_prefix/nginx:unstable}
    standin_builder "$BUILDER_IMAGE" "$rust_version"
    standin_node "$NODE_IMAGE"
    standin_runtime "$RUNTIME_IMAGE"
    standin_redis "$REDIS_IMAGE"
    standin_nginx "$NGINX_IMAGE"
}

standin_node() { # name
    local name=$1
    image_exists "$name" && return
    # This machine's Node.js and npm, which Debian's bookworm packages are too old to match.
    local ctx="$COMPOSE_TMP/node-context" node npm_dir
    node=$(command -v node) && npm_dir=$(dirname "$(readlink -f "$(command -v npm)")")/..
    [[ -x $node && -f $npm_dir/package.json ]] || { echo "node/npm missing on the host for the node stand-in"; return 1; }
    rm -rf "$ctx" && mkdir -p "$ctx"
    cp "$node" "$ctx/node" && cp -a "$(readlink -f "$npm_dir")" "$ctx/npm"
    cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
    cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $standin_prefix/debian:bookworm
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
COPY ca-certificates.crt /etc/ssl/certs/host-ca-certificates.crt
RUN ln -s /usr/local/lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/host-ca-certificates.crt
DOCKERFILE
    "$DOCKER" build -q -t "$name" "$ctx" >/dev/null
    rm -rf "$ctx"
}
