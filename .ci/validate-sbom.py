"""Checks a dist directory's SBOMs with tools nobody here wrote.

    validate-sbom.py DIST RUST_AUDIT_INFO

- the CycloneDX document against the CycloneDX 1.6 JSON schema, with the
  CycloneDX project's cyclonedx-python-lib (JsonStrictValidator);
- the SPDX document parsed and validated as SPDX 2.3 with the SPDX project's
  spdx-tools;
- each binary's embedded dependency list (cargo auditable's .dep-v0) as
  rust-audit-info, from the cargo-auditable authors, reads it: the same
  crates, name and version, as both SBOMs list.

Exits 1 naming what is wrong; prints one line per check that passed.
"""

import glob
import json
import os
import subprocess
import sys
import tarfile
import tempfile

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document


def fail(msg):
    sys.exit(f"validate-sbom: {msg}")


def main():
    dist, audit_info = sys.argv[1], sys.argv[2]
    (cdx_path,) = glob.glob(os.path.join(dist, "*.cdx.json"))
    (spdx_path,) = glob.glob(os.path.join(dist, "*.spdx.json"))

    with open(cdx_path) as f:
        text = f.read()
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        fail(f"{cdx_path}: not valid CycloneDX 1.6: {error}")
    cdx = json.loads(text)
    in_cdx = {(c["name"], c["version"]) for c in cdx["components"]}
    main_component = cdx["metadata"]["component"]
    in_cdx.add((main_component["name"], main_component["version"]))
    print(f"{os.path.basename(cdx_path)}: valid CycloneDX 1.6 (cyclonedx-python-lib), {len(in_cdx)} crates")

    doc = parse_file(spdx_path)
    messages = validate_full_spdx_document(doc, "SPDX-2.3")
    if messages:
        fail(f"{spdx_path}: not valid SPDX 2.3: " + "; ".join(m.validation_message for m in messages[:5]))
    in_spdx = {(p.name, p.version) for p in doc.packages}
    if in_spdx != in_cdx:
        fail(f"the SBOMs differ: only in SPDX {sorted(in_spdx - in_cdx)}, only in CycloneDX {sorted(in_cdx - in_spdx)}")
    print(f"{os.path.basename(spdx_path)}: valid SPDX 2.3 (spdx-tools), the same {len(in_spdx)} crates")

    tarballs = sorted(glob.glob(os.path.join(dist, "*.tar.gz")))
    if not tarballs:
        fail(f"no tarballs in {dist}")
    with tempfile.TemporaryDirectory() as tmp:
        for tb in tarballs:
            with tarfile.open(tb) as t:
                member = next(m for m in t.getmembers() if m.name.endswith("/prestop-wait") or m.name == "prestop-wait")
                t.extract(member, tmp, filter="data")
                binary = os.path.join(tmp, member.name)
            out = subprocess.run([audit_info, binary], check=True, capture_output=True, text=True).stdout
            embedded = {
                (p["name"], p["version"])
                for p in json.loads(out)["packages"]
                if p.get("kind", "runtime") == "runtime"
            }
            if embedded != in_cdx:
                fail(f"{os.path.basename(tb)}: rust-audit-info reads {len(embedded)} crates; "
                     f"only embedded {sorted(embedded - in_cdx)}, only in the SBOMs {sorted(in_cdx - embedded)}")
            print(f"{os.path.basename(tb)}: rust-audit-info reads the same {len(embedded)} crates as the SBOMs")
            os.remove(binary)


if __name__ == "__main__":
    main()
