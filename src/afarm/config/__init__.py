# SPDX-License-Identifier: MIT
"""Configuration specs shipped with the package and the loader that validates against them."""
