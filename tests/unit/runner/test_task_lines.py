# SPDX-License-Identifier: MIT
"""How a task's output lines become its warnings and its error lines."""

from afarm.runner.task import MAX_TASK_WARNINGS, TaskRun


def test_render_preps_warning_lines_are_task_warnings_not_error_lines() -> None:
    run = TaskRun()
    run._line("afarm: warning: image 'x' reads '//x.png': no such file in the job")
    run._line("afarm warning: the older spelling")
    assert run.warnings == ["image 'x' reads '//x.png': no such file in the job",
                            "the older spelling"]
    assert list(run.errors) == []


def test_eevees_headless_egl_lines_are_not_error_lines_but_other_egl_errors_are() -> None:
    run = TaskRun()
    run._line("EGL Error (0x3001): EGL_NOT_INITIALIZED: EGL is not initialized, or could"
              " not be initialized, for the specified EGL display connection.")
    run._line("EGL Error (0x3009): EGL_BAD_MATCH: Arguments are inconsistent (for example,"
              " a valid context requires buffers not supplied by a valid surface).")
    run._line("EGL Error (0x3003): EGL_BAD_ALLOC: out of memory")
    run._line("Error: Cannot read file '/x.blend'")
    assert list(run.errors) == ["EGL Error (0x3003): EGL_BAD_ALLOC: out of memory",
                                "Error: Cannot read file '/x.blend'"]


def test_warnings_are_bounded_in_number_and_length_and_the_rest_counted() -> None:
    run = TaskRun()
    for i in range(MAX_TASK_WARNINGS + 5):
        run._line(f"afarm: warning: missing {i} " + "x" * 5000)
    assert len(run.warnings) == MAX_TASK_WARNINGS
    assert all(len(w) <= 1000 for w in run.warnings)
    assert run.more_warnings == 5


def test_a_failed_eevee_render_is_not_explained_by_its_harmless_egl_lines() -> None:
    from afarm.applications.blender import BlenderApp

    app = BlenderApp("blender", {"executable": "blender"})
    lines = ["EGL Error (0x3001): EGL_NOT_INITIALIZED: EGL is not initialized.",
             "Error: Cannot read file '/job/in/x.blend': No such file",
             "EGL Error (0x3009): EGL_BAD_MATCH: Arguments are inconsistent."]
    assert app.failure(1, lines) == ("blender exited 1: Error: Cannot read file"
                                     " '/job/in/x.blend': No such file")
