# SPDX-License-Identifier: MIT
from setuptools import find_packages, setup

setup(
    name="afarm",
    version="0.3.0",
    description="Render farm and distributed computing for Blender users on Debian",
    license="MIT",
    python_requires=">=3.11",
    package_dir={"": "src"},
    packages=find_packages("src"),
    package_data={
        "afarm.config": ["*.spec"],
        "afarm.applications": ["scripts/*.py", "defaults/*.conf"],
        "afarm.master.web": ["static/*.js", "static/*.css", "static/*.svg"],
    },
    entry_points={
        "console_scripts": [
            "afarmctl = afarm.cli.main:main",
            "afarm-master = afarm.master.daemon:main",
            "afarm-slave = afarm.slave.daemon:main",
            "afarm-slave-shell = afarm.slave.shell:main",
        ]
    },
)
