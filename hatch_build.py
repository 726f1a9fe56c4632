"""Hatchling build hook: the workflow goes into the wheel as daedalus/_workflow/.

The repository keeps the Snakefile, rules/, scripts/, profiles/ and the demo definitions at
its top level; a wheel carries a copy laid out the same way (daedalus.runner.workflow_dir()).
The mapping is [tool.hatch.build.targets.wheel.hooks.custom.force-include] in
pyproject.toml. It is applied to standard wheels only, not to editable installs: there the
copy would land in site-packages/daedalus/ and, as a namespace package, shadow the
editable `daedalus` (which runs the repository's own workflow anyway).
"""

from __future__ import annotations

from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class WorkflowHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name == "wheel" and version == "standard":
            build_data["force_include"].update(self.config.get("force-include", {}))
