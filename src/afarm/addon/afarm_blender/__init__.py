# SPDX-License-Identifier: MIT
"""afarm for Blender: submit the open .blend to an afarm render farm from Output Properties.

Install it from Edit > Preferences > Add-ons > Install (the zip the master serves at
http://MASTER:7732/addon/afarm_blender.zip), enable "Render: afarm", and set the master's
address and token in the add-on's preferences (kept in Blender's preferences, never in a
.blend). The add-on uses afarm's own client (the python3-afarm package, or the folder named
in the preferences), so it submits exactly as ``afarmctl submit`` does.
"""

bl_info = {
    "name": "afarm",
    "author": "afarm",
    "version": (0, 2, 0),
    "blender": (3, 4, 0),
    "location": "Properties > Output > afarm",
    "description": "Submit the scene to an afarm render farm, see its dependencies, progress"
                   " and last frame",
    "category": "Render",
}


def register() -> None:
    # bpy only here: afarm's tests import the bridge module without Blender.
    from . import ui

    ui.register()


def unregister() -> None:
    from . import ui

    ui.unregister()
