! Clearing the pages of recycled output memory (pkg/atomdesc/output_memory.py) that
! may hold non-zeros: only where a page has a bit set, because a page that was only
! read maps the system's shared zero page, and writing it would make it memory of its
! own. And writing a whole page past the cache (pages_stream.c), for a page whose every
! word is known: it need not be read first.
module atomdesc_pages
  use, intrinsic :: iso_c_binding, only: c_double, c_int64_t
  use, intrinsic :: iso_fortran_env, only: int64
  implicit none
  private
  public :: clear_if_written, stream_words, stream_fence

  interface
    !> dst(1:n) = src(1:n), with non-temporal stores where the CPU has them: weakly
    !> ordered, stream_fence must follow before other threads may read dst.
    subroutine stream_words(src, dst, n) bind(C, name="atomdesc_stream_words")
      import :: c_double, c_int64_t
      real(c_double), intent(in) :: src(*)
      real(c_double), intent(inout) :: dst(*)
      integer(c_int64_t), value :: n
    end subroutine stream_words

    !> Orders the stream_words stores before it ahead of later stores.
    subroutine stream_fence() bind(C, name="atomdesc_stream_fence")
    end subroutine stream_fence
  end interface

contains

  !> w(1:n) = 0 if any of its bits is set.
  pure subroutine clear_if_written(n, w)
    integer, intent(in) :: n
    integer(int64), intent(inout) :: w(n)
    if (iany(w) /= 0) w = 0
  end subroutine clear_if_written

end module atomdesc_pages
