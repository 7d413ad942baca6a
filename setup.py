from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent


def requirements(name):
    lines = (here / name).read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="tailsrv",
    version="0.1.0",
    description="A high-performance file-streaming server: tail -f as a server",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Unlicense",
    keywords="tail follow log streaming server gevent sendfile inotify",
    packages=find_packages(include=["tailsrv", "tailsrv.*"]),
    package_data={"tailsrv.http": ["static/*"]},  # the --http viewer page
    python_requires=">=3.10",
    install_requires=requirements("requirements.txt"),
    extras_require={"test": requirements("requirements-test.txt")},
    entry_points={"console_scripts": [
        "tailsrv = tailsrv.cli:main",
        "tscat = tailsrv.client.tscat:main",
        "tssync = tailsrv.client.tssync:main",
        "tspub = tailsrv.client.tspub:main",
    ]},
    classifiers=[
        "Development Status :: 4 - Beta",
        "Environment :: Console",
        "Environment :: No Input/Output (Daemon)",
        "Framework :: Gevent",
        "Intended Audience :: System Administrators",
        "License :: OSI Approved :: The Unlicense (Unlicense)",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: System :: Networking",
        "Topic :: System :: Logging",
    ],
)
