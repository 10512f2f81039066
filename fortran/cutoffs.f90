! Cutoff (switching) functions shared by every family's kernel.
!
! Support module: compiled into the extension but not given to f2py, so it may
! use any Fortran feature. Each cutoff is selected by an integer kind that the
! Python side takes from the cutoff plugin (atomdesc.cutoffs):
!
!   0  tabulated: cubic Hermite spline of values and derivatives on a grid
!      over [0, r_c], uniform between breakpoints (any cutoff a plugin gives as
!      a numpy function); cpar holds the grid: the number of pieces, then
!      (start radius, first node, spacing) of each (see splines.f90)
!   1  cosine      fc = (cos(pi r / r_c) + 1) / 2
!   2  tanh3       fc = tanh(1 - r / r_c)**3           (Behler's f_c2)
!   3  polynomial  fc = 1 - polynomial in x = r / r_c of order cpar(1) = 1..4
!                  (n2p2 types 5-8: C1..C4 at r_c)
module atomdesc_cutoffs
  use, intrinsic :: iso_c_binding, only: c_double
  use atomdesc_splines, only: hermite_spline
  implicit none
  private
  public :: dp, cutoff_value, cutoff_array, CUTOFF_TABULATED, CUTOFF_COSINE, CUTOFF_TANH3, CUTOFF_POLYNOMIAL

  integer, parameter :: dp = c_double
  real(dp), parameter :: pi = 3.14159265358979323846264338327950288_dp
  integer, parameter :: CUTOFF_TABULATED = 0, CUTOFF_COSINE = 1, CUTOFF_TANH3 = 2, &
                        CUTOFF_POLYNOMIAL = 3

contains

  !> fc(r) and dfc/dr for r >= 0; both are 0 for r >= rc.
  pure subroutine cutoff_value(kind, r, rc, cpar, tab, fc, dfc)
    integer, intent(in) :: kind
    real(dp), intent(in) :: r, rc, cpar(:), tab(:, :)
    real(dp), intent(out) :: fc, dfc
    real(dp) :: x, t

    fc = 0.0_dp
    dfc = 0.0_dp
    if (r >= rc) return
    x = r / rc
    select case (kind)
    case (CUTOFF_COSINE)
      fc = 0.5_dp * (cos(pi * x) + 1.0_dp)
      dfc = -0.5_dp * pi / rc * sin(pi * x)
    case (CUTOFF_TANH3)
      t = tanh(1.0_dp - x)
      fc = t**3
      dfc = -3.0_dp * t**2 * (1.0_dp - t**2) / rc
    case (CUTOFF_POLYNOMIAL)
      call polynomial_cutoff(nint(cpar(1)), x, fc, dfc)
      dfc = dfc / rc
    case (CUTOFF_TABULATED)
      call hermite_spline(r, cpar, tab, fc, dfc)
    end select
  end subroutine cutoff_value

  !> fc and dfc/dr for an array of distances: the kind is chosen once, so
  !> the loops over r vectorise (cos, tanh and exp have SIMD versions).
  pure subroutine cutoff_array(kind, r, rc, cpar, tab, fc, dfc, derivative)
    integer, intent(in) :: kind
    real(dp), intent(in) :: r(:), rc, cpar(:), tab(:, :)
    real(dp), intent(out) :: fc(:), dfc(:)
    logical, intent(in) :: derivative   ! .false.: dfc is not needed (left 0 for cosine)
    integer :: i, order
    real(dp) :: x, t

    select case (kind)
    case (CUTOFF_COSINE)
      ! two loops: one loop with both would become a scalar sincos call
      do i = 1, size(r)
        x = min(r(i), rc) / rc
        fc(i) = 0.5_dp * (cos(pi * x) + 1.0_dp)
      end do
      dfc(1:size(r)) = 0.0_dp
      if (derivative) then
        do i = 1, size(r)
          x = min(r(i), rc) / rc
          dfc(i) = -0.5_dp * pi / rc * sin(pi * x)
        end do
      end if
    case (CUTOFF_TANH3)
      do i = 1, size(r)
        t = tanh(1.0_dp - min(r(i), rc) / rc)
        fc(i) = t**3
        dfc(i) = -3.0_dp * t**2 * (1.0_dp - t**2) / rc
      end do
    case (CUTOFF_POLYNOMIAL)
      order = nint(cpar(1))
      do i = 1, size(r)
        call polynomial_cutoff(order, min(r(i), rc) / rc, fc(i), dfc(i))
        dfc(i) = dfc(i) / rc
      end do
    case default
      do i = 1, size(r)
        call cutoff_value(kind, r(i), rc, cpar, tab, fc(i), dfc(i))
      end do
    end select
  end subroutine cutoff_array

  !> n2p2's polynomial cutoffs: C^order smooth at x = 1, value 1 at x = 0.
  pure elemental subroutine polynomial_cutoff(order, x, fc, dfc)
    integer, intent(in) :: order
    real(dp), intent(in) :: x
    real(dp), intent(out) :: fc, dfc
    select case (order)
    case (1)
      fc = (2.0_dp * x - 3.0_dp) * x**2 + 1.0_dp
      dfc = (6.0_dp * x - 6.0_dp) * x
    case (2)
      fc = ((15.0_dp - 6.0_dp * x) * x - 10.0_dp) * x**3 + 1.0_dp
      dfc = ((60.0_dp - 30.0_dp * x) * x - 30.0_dp) * x**2
    case (3)
      fc = (x * (x * (20.0_dp * x - 70.0_dp) + 84.0_dp) - 35.0_dp) * x**4 + 1.0_dp
      dfc = (x * (x * (140.0_dp * x - 420.0_dp) + 420.0_dp) - 140.0_dp) * x**3
    case default
      fc = (x * (x * ((315.0_dp - 70.0_dp * x) * x - 540.0_dp) + 420.0_dp) - 126.0_dp) * x**5 &
           + 1.0_dp
      dfc = (x * (x * ((2520.0_dp - 630.0_dp * x) * x - 3780.0_dp) + 2520.0_dp) - 630.0_dp) &
            * x**4
    end select
  end subroutine polynomial_cutoff

end module atomdesc_cutoffs
