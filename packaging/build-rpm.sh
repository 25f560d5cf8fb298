#!/bin/bash
# Build the ipfailover-agents RPM and SRPM from the working tree, then run rpmlint on them.
#
#   packaging/build-rpm.sh [TOPDIR]      (default TOPDIR: rpmbuild/ in the repository)
#
# What `make rpm` runs, and what tests/test_packaging.py runs into a temporary TOPDIR. The
# source tarball holds the tracked files that exist plus the untracked files git does not ignore,
# so agents that are not committed yet are packaged too. rpmlint's report is kept in
# TOPDIR/rpmlint.txt; the script fails when rpmlint reports an error.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
topdir=$(mkdir -p "${1:-$repo/rpmbuild}" && cd "${1:-$repo/rpmbuild}" && pwd)
name=ipfailover-agents
spec=$repo/packaging/$name.spec
rpmlintrc=$repo/packaging/$name.rpmlintrc
version=$(sed -n 's/^Version:[[:space:]]*//p' "$spec")

# Only the directories rpmbuild writes: TOPDIR may be any directory the caller chose.
for sub in BUILD BUILDROOT RPMS SRPMS SOURCES SPECS; do
    rm -rf "${topdir:?}/$sub"
    mkdir -p "$topdir/$sub"
done

cd "$repo"
# Reproducible tarball: sorted, owned by root, every member with the time of the last commit.
mtime=$(git log -1 --format=%ct 2>/dev/null || echo 0)
git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' path; do
        if [ -e "$path" ] || [ -L "$path" ]; then printf '%s\0' "$path"; fi
    done \
    | tar --create --gzip --null --no-recursion --files-from=- \
        --transform="flags=r;s|^|$name-$version/|" \
        --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" \
        --file="$topdir/SOURCES/$name-$version.tar.gz"
cp "$spec" "$topdir/SPECS/"

# BuildRequires are rpm packages; where the rpm database does not know python3 at all (Debian,
# whose packages are in dpkg's database), skip that check: python3 is there all the same.
nodeps=()
if ! rpm -q --whatprovides python3 >/dev/null 2>&1; then
    nodeps=(--nodeps)
fi
rpmbuild -ba "${nodeps[@]}" --define "_topdir $topdir" "$topdir/SPECS/$name.spec"

rpmlint --rpmlintrc "$rpmlintrc" "$spec" "$topdir"/SRPMS/*.src.rpm "$topdir"/RPMS/noarch/*.rpm \
    | tee "$topdir/rpmlint.txt"
