! Clearing the pages of recycled output memory (pkg/atomdesc/output_memory.py) that
! may hold non-zeros: only where a page has a bit set, because a page that was only
! read maps the system's shared zero page, and writing it would make it memory of its
! own.
module atomdesc_pages
  use, intrinsic :: iso_fortran_env, only: int64
  implicit none
  private
  public :: clear_if_written

contains

  !> w(1:n) = 0 if any of its bits is set.
  pure subroutine clear_if_written(n, w)
    integer, intent(in) :: n
    integer(int64), intent(inout) :: w(n)
    if (iany(w) /= 0) w = 0
  end subroutine clear_if_written

end module atomdesc_pages
