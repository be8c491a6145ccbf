#!/bin/sh
# The fleet's TLS material, made once into DIR (default /certs) if it is
# not there yet: a CA (fleet-ca.crt) and, signed by it, a key and a
# certificate per service named for it, whose names are the service's
# host name, localhost and 127.0.0.1, valid for servers and clients alike
# (a cluster node is both on its peer port). Needs openssl.
set -eu
dir="${1:-/certs}"
services="ferry-1 ferry-2 ferry-3 mirror"
mkdir -p "$dir"
if [ -s "$dir/fleet-ca.crt" ]; then
    echo "certs: $dir has them already"
    exit 0
fi
# Made in a scratch folder and moved in last, so an interrupted run
# leaves no CA that the next run would take as complete.
work="$(mktemp -d "$dir/.make.XXXXXX")"
cd "$work"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout fleet-ca.key -out fleet-ca.crt -days 825 -subj "/CN=Ferry fleet CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
for name in $services; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$name.key" -out "$name.csr" -subj "/CN=$name" 2>/dev/null
    printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' \
        "$name" > "$name.ext"
    openssl x509 -req -in "$name.csr" -CA fleet-ca.crt -CAkey fleet-ca.key \
        -CAcreateserial -out "$name.crt" -days 825 -extfile "$name.ext" 2>/dev/null
    rm "$name.csr" "$name.ext"
done
rm -f fleet-ca.srl
chmod 600 ./*.key
# The nodes run as uid 10001 (see docker/Dockerfile): their own keys must
# be readable by it; the CA's key stays root's.
if [ "$(id -u)" = 0 ]; then
    for name in $services; do chown 10001:10001 "$name.key"; done
fi
for name in $services; do mv "$name.key" "$name.crt" "$dir/"; done
mv fleet-ca.key "$dir/"
mv fleet-ca.crt "$dir/"
cd "$dir"
rmdir "$work"
echo "certs: made in $dir"
