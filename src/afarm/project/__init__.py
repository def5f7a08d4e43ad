# SPDX-License-Identifier: MIT
"""A Blender project as a job carries it: the files a .blend needs, traced without Blender
(trace), laid out under a project root with paths rewritten (pack, rewrite), and the quick
header check the master also runs (header). Only trace and rewrite import
blender-asset-tracer; the master imports header alone."""
