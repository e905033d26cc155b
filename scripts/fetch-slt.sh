#!/usr/bin/env bash
# Downloads DataFusion's sqllogictest files (the datafusion-sqllogictest crate
# of the DataFusion version this workspace builds with) from crates.io, checks
# the archive against the registry's checksum and unpacks it under the shared
# target directory, where the `sqllogictest` test looks for it. Does nothing
# when it is already there.
set -euo pipefail

version="55.2.0"
sha256="b270cea4d8c2b2c42773e60164204386fb97d7936736e5f126ac751b86d7dabe"
name="datafusion-sqllogictest-$version"
target="${CARGO_TARGET_DIR:-$HOME/.cache/ballista-target}/sqllogictest"

if [ -f "$target/$name/.complete" ]; then
    exit 0
fi
mkdir -p "$target"
archive="$target/$name.crate"
url="https://static.crates.io/crates/datafusion-sqllogictest/$name.crate"
curl --fail --silent --show-error --location --retry 3 -o "$archive.part" "$url"
echo "$sha256  $archive.part" | sha256sum --check --quiet -
mv "$archive.part" "$archive"
rm -rf "${target:?}/$name"
tar -xzf "$archive" -C "$target"
touch "$target/$name/.complete"
echo "DataFusion's sqllogictest files are in $target/$name/test_files"
