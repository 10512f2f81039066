! Cubic Hermite spline tables: how functions given in numpy run in the kernels.
!
! Support module (not given to f2py). A table holds values and derivatives
! d/dr of one or several functions at the nodes of a grid over [0, r_max] that
! is uniform between breakpoints (radii where a function is only C1): grid
! holds three numbers per piece, its start radius, its first node (0-based)
! and its spacing (atomdesc.splines builds tables and grids). The
! derivative the kernels use is the exact derivative of the interpolant, so
! analytic gradients stay consistent with the features.
module atomdesc_splines
  use, intrinsic :: iso_c_binding, only: c_double
  implicit none
  private
  public :: spline_interval, hermite_spline, spline_values, spline_values_scaled

  integer, parameter :: dp = c_double

contains

  !> The interval of a spline table that holds r, on a grid that is uniform
  !> between breakpoints: grid holds three numbers per piece, its start radius,
  !> its first node (0-based) and its spacing; a piece runs up to the next one's
  !> start. Returns the interval's first node i (1-based; i + 1 <= n whatever r
  !> and grid hold), the position t in it and its width h.
  pure subroutine spline_interval(r, grid, n, i, t, h)
    real(dp), intent(in) :: r, grid(:)
    integer, intent(in) :: n
    integer, intent(out) :: i
    real(dp), intent(out) :: t, h
    integer :: k
    real(dp) :: s
    k = 1   ! the piece's first entry in grid
    do while (k + 5 <= size(grid))
      if (r < grid(k + 3)) exit
      k = k + 3
    end do
    h = grid(k + 2)
    s = grid(k + 1) + (r - grid(k)) / h
    i = min(max(int(s), 0), n - 2)   ! 0-based interval index
    t = s - real(i, dp)
    i = i + 1
  end subroutine spline_interval

  !> Cubic Hermite interpolation of tab(1, :) = f and tab(2, :) = df/dr given
  !> at the nodes of the grid in cpar: its number of pieces, then each piece's
  !> (start, first node, spacing) as in spline_interval.
  pure subroutine hermite_spline(r, cpar, tab, f, df)
    real(dp), intent(in) :: r, cpar(:), tab(:, :)
    real(dp), intent(out) :: f, df
    integer :: i, np
    real(dp) :: h, t

    f = 0.0_dp
    df = 0.0_dp
    if (size(cpar) < 4 .or. size(tab, 2) < 2) return   ! never so from atomdesc.cutoffs
    np = max(1, min(nint(cpar(1)), (size(cpar) - 1) / 3))
    call spline_interval(r, cpar(2:1 + 3 * np), size(tab, 2), i, t, h)
    f = (1.0_dp + 2.0_dp * t) * (1.0_dp - t)**2 * tab(1, i) &
        + t * (1.0_dp - t)**2 * h * tab(2, i) &
        + t**2 * (3.0_dp - 2.0_dp * t) * tab(1, i + 1) &
        + t**2 * (t - 1.0_dp) * h * tab(2, i + 1)
    df = (6.0_dp * t * (t - 1.0_dp) * (tab(1, i) - tab(1, i + 1))) / h &
         + (3.0_dp * t**2 - 4.0_dp * t + 1.0_dp) * tab(2, i) &
         + (3.0_dp * t**2 - 2.0_dp * t) * tab(2, i + 1)
  end subroutine hermite_spline

  !> Every function of a table and its derivative at r.
  pure subroutine spline_values(r, grid, tab, f, df)
    real(dp), intent(in) :: r, grid(:), tab(:, :, :)
    real(dp), intent(out) :: f(:), df(:)
    integer :: i
    real(dp) :: h, t, h00, h10, h01, h11, g00, g10, g11
    call spline_interval(r, grid, size(tab, 3), i, t, h)
    h00 = (1.0_dp + 2.0_dp * t) * (1.0_dp - t)**2
    h10 = t * (1.0_dp - t)**2 * h
    h01 = t * t * (3.0_dp - 2.0_dp * t)
    h11 = t * t * (t - 1.0_dp) * h
    g00 = 6.0_dp * t * (t - 1.0_dp) / h
    g10 = 3.0_dp * t * t - 4.0_dp * t + 1.0_dp
    g11 = 3.0_dp * t * t - 2.0_dp * t
    f = h00 * tab(:, 1, i) + h10 * tab(:, 2, i) + h01 * tab(:, 1, i + 1) + h11 * tab(:, 2, i + 1)
    ! the values' difference first: g00 y0 - g00 y1 would cancel terms ~ y / h, and their
    ! rounding, in the derivative of a fine table
    df = g00 * (tab(:, 1, i) - tab(:, 1, i + 1)) + g10 * tab(:, 2, i) + g11 * tab(:, 2, i + 1)
  end subroutine spline_values

  !> Every function of a table at n radii r(k), times a weight w(k):
  !> wr(:, k) = w(k) R(r(k)) and, with derivs, wdr(:, k) = w(k) dR/dr(r(k)). One call
  !> for all the neighbours of a centre, so spline_interval is inlined here.
  pure subroutine spline_values_scaled(n, r, w, grid, nfun, ntab, tab, derivs, wr, wdr)
    integer, intent(in) :: n, nfun, ntab
    logical, intent(in) :: derivs
    real(dp), intent(in) :: r(n), w(n), grid(:), tab(nfun, 2, ntab)
    real(dp), intent(inout) :: wr(:, :), wdr(:, :)
    integer :: e, i, k
    real(dp) :: h, t, h00, h10, h01, h11, g00, g10, g11
    do e = 1, n
      call spline_interval(r(e), grid, ntab, i, t, h)
      h00 = w(e) * (1.0_dp + 2.0_dp * t) * (1.0_dp - t)**2
      h10 = w(e) * t * (1.0_dp - t)**2 * h
      h01 = w(e) * t * t * (3.0_dp - 2.0_dp * t)
      h11 = w(e) * t * t * (t - 1.0_dp) * h
      do k = 1, nfun
        wr(k, e) = h00 * tab(k, 1, i) + h10 * tab(k, 2, i) + h01 * tab(k, 1, i + 1) &
                   + h11 * tab(k, 2, i + 1)
      end do
      if (.not. derivs) cycle
      g00 = w(e) * 6.0_dp * t * (t - 1.0_dp) / h
      g10 = w(e) * (3.0_dp * t * t - 4.0_dp * t + 1.0_dp)
      g11 = w(e) * (3.0_dp * t * t - 2.0_dp * t)
      do k = 1, nfun  ! the values' difference first, as in spline_values
        wdr(k, e) = g00 * (tab(k, 1, i) - tab(k, 1, i + 1)) + g10 * tab(k, 2, i) &
                    + g11 * tab(k, 2, i + 1)
      end do
    end do
  end subroutine spline_values_scaled

end module atomdesc_splines
